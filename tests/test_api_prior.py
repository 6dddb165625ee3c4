"""The prior on the public API (``namecls/ui/api.py``), called with gradio_client against the app served in-process.

Every endpoint that answers with probabilities or sets takes ``prior`` as an optional last argument: left out, an
existing call (positional or by name) gets exactly the answer it got before ("lists"); "equal" gives the
library's equal-prior answer; anything else is the app's clear error and changes nothing. The reference answers
come from checkpoints loaded here (``namecls.load``), not from the app's models, and from ``service`` on the app's.
"""

import json
import os

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from test_app import _launch  # noqa: E402  (the same launcher and launch settings as test_app's server)

import app  # noqa: E402
import namecls  # noqa: E402
from namecls.posthoc import prior as prior_rule  # noqa: E402
from namecls.serving import service  # noqa: E402
from namecls.ui import api  # noqa: E402

PARAMETERS = {"/predict": ["name", "model", "k", "prior"], "/predict_details": ["name", "model", "k", "prior"],
              "/trace": ["name", "model", "prior"], "/predict_batch": ["names", "model", "k", "prior"]}
BATCH = ["Abel", "12345", "Adam", "Ślusàrski", "Hong"]
BAD_PRIOR = "prior must be one of 'lists', 'equal'"


@pytest.fixture(scope="module")
def client():
    url = _launch(app.demo)
    yield Client(url, verbose=False)
    app.demo.close()


@pytest.fixture(scope="module")
def reference():
    """The library's own answers, from checkpoints loaded here (not the app's models)."""
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


def as_json(value):
    """``value`` as a client receives it (through JSON)."""
    return json.loads(json.dumps(value))


def same_top(got: dict, expected: list[tuple[str, float]]) -> None:
    assert list(got) == [lang for lang, _ in expected]
    assert list(got.values()) == pytest.approx([p for _, p in expected], abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# The signature and the docs


def test_every_endpoint_takes_the_prior_last_defaulting_to_the_lists(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {name: [p["parameter_name"] for p in info["parameters"]] for name, info in endpoints.items()} == PARAMETERS
    for name, info in endpoints.items():
        prior = info["parameters"][-1]
        assert prior["parameter_has_default"] and prior["parameter_default"] == "lists", name
        assert prior["type"] == {"enum": ["lists", "equal"]}, name
    assert api.Prior.__args__ == prior_rule.PRIORS and prior_rule.DEFAULT == "lists"


def test_the_api_page_says_what_the_prior_does():
    endpoints = app.demo.get_api_info()["named_endpoints"]  # the "Use via API" page's descriptions
    for says in ('"lists" (the default)', "training lists (half of them Russian)",
                 '"equal" every language equally likely', 'use "equal" for names whose mix favours no language'):
        assert says in api.PRIOR_SENTENCE
    for name in PARAMETERS:
        assert endpoints[name]["description"].count(api.PRIOR_SENTENCE) == 1, name


# ---------------------------------------------------------------------------------------------------------------
# Left out: the answer as before


@pytest.mark.slow
def test_predict_without_prior_is_unchanged(client, reference):
    positional = client.predict("Abel", "gru", 3, api_name="/predict")
    assert positional == as_json(service.predict(app.MODELS, "Abel", "gru", 3, prior="lists"))
    same_top(positional, reference["gru"].predict("Abel", 3))
    assert list(positional)[0] == "Russian"
    assert client.predict(name="Abel", api_name="/predict") == positional  # by name, every default
    assert client.predict("Abel", "gru", 3, "lists", api_name="/predict") == positional


def test_predict_details_without_prior_is_unchanged(client, reference):
    got = client.predict("Demirkan", "rnn", 4, api_name="/predict_details")
    assert got == as_json(service.predict_details(app.MODELS, "Demirkan", "rnn", 4, prior="lists"))
    direct = reference["rnn"].predict_details("Demirkan", 4)
    same_top(got["top"], direct.top)
    assert got["set"] == direct.set == ["Russian"] and got["prior"] == "lists"
    assert got["novelty"] == pytest.approx(direct.novelty, abs=1e-6) and got["low_confidence"] == direct.low_confidence


@pytest.mark.recorded  # the committed checkpoints' answers for these names
def test_trace_without_prior_is_unchanged(client, reference):
    got = client.predict("Bach", "rnn", api_name="/trace")
    expected = as_json(service.trace(app.MODELS, "Bach", "rnn", prior="lists"))
    assert got["probs"] == expected["probs"] and got["sets"] == expected["sets"] and got["prior"] == "lists"
    assert got["attribution"] == pytest.approx(expected["attribution"], abs=1e-6)
    final = dict(zip(got["labels"], got["probs"][-1]))
    for lang, p in reference["rnn"].predict("Bach", 18):
        assert final[lang] == pytest.approx(p, abs=1e-6)
    assert got["sets"][-1] == reference["rnn"].predict_set("Bach") == ["German", "Vietnamese"]


def test_predict_batch_without_prior_is_unchanged(client, reference):
    rows = client.predict(BATCH, "gru", 2, api_name="/predict_batch")
    assert rows == as_json(service.predict_batch(app.MODELS, BATCH, "gru", 2, prior="lists"))
    assert rows[1]["error"] and rows[1]["top1"] is None
    for row in (rows[0], rows[2], rows[3], rows[4]):
        same_top(row["top_k"], reference["gru"].predict(row["name"], 2))
        assert row["set"] == reference["gru"].predict_set(row["name"])


# ---------------------------------------------------------------------------------------------------------------
# "equal": the library's equal-prior answer


@pytest.mark.slow
@pytest.mark.recorded  # the committed checkpoints' answers for these names
def test_predict_and_details_under_the_equal_prior(client, reference):
    got = client.predict("Abel", "gru", 3, "equal", api_name="/predict")
    assert got == as_json(service.predict(app.MODELS, "Abel", "gru", 3, prior="equal"))
    same_top(got, reference["gru"].predict("Abel", 3, prior="equal"))
    assert list(got)[0] == "German"  # Russian under the lists' prior
    assert client.predict(name="Abel", prior="equal", api_name="/predict") == got  # by name, the rest defaults

    details = client.predict("Adam", "gru", 3, "equal", api_name="/predict_details")
    assert details == as_json(service.predict_details(app.MODELS, "Adam", "gru", 3, prior="equal"))
    direct = reference["gru"].predict_details("Adam", 3, prior="equal")
    same_top(details["top"], direct.top)
    assert details["prior"] == direct.prior == "equal" and details["set"] == direct.set
    assert details["set"][0] == "Arabic" and reference["gru"].predict_set("Adam")[0] == "English"  # lists': English


def test_trace_under_the_equal_prior(client, reference):
    got = client.predict("Bach", "rnn", "equal", api_name="/trace")
    expected = as_json(service.trace(app.MODELS, "Bach", "rnn", prior="equal"))
    assert got["probs"] == expected["probs"] and got["sets"] == expected["sets"] and got["prior"] == "equal"
    final = dict(zip(got["labels"], got["probs"][-1]))
    for lang, p in reference["rnn"].predict("Bach", 18, prior="equal"):
        assert final[lang] == pytest.approx(p, abs=1e-6)
    assert got["sets"][-1] == reference["rnn"].predict_set("Bach", prior="equal")
    assert got["sets"][-1][0] == "Vietnamese"  # German under the lists' prior


def test_predict_batch_under_the_equal_prior(client, reference):
    rows = client.predict(BATCH, "gru", 2, "equal", api_name="/predict_batch")
    assert rows == as_json(service.predict_batch(app.MODELS, BATCH, "gru", 2, prior="equal"))
    assert rows[1]["error"] and rows[1]["top1"] is None  # a bad name still gets its reason, the batch goes on
    for row in (rows[0], rows[2], rows[3], rows[4]):
        direct = reference["gru"].predict_details(row["name"], 2, prior="equal")
        same_top(row["top_k"], direct.top)
        assert row["top1"] == direct.top[0][0] and row["set"] == direct.set
        assert row["low_confidence"] == direct.low_confidence
    assert [row["top1"] for row in rows] == ["German", None, "Arabic", "Polish", "Korean"]


@pytest.mark.slow
def test_equal_is_bayes_rule_on_the_lists_answer(client):
    """Changing the prior multiplies each language's probability by one factor, the same for every name (then
    renormalises): the factors, read off two names' answers, agree, and the lists' most common language, Russian,
    is scaled down most."""
    factors = []
    for name in ("Abel", "Nguyen", "Hong", "Schmidt"):
        lists = client.predict(name, "gru", 18, api_name="/predict")
        equal = client.predict(name, "gru", 18, "equal", api_name="/predict")
        labels = sorted(lists)
        ratio = np.array([equal[lang] / lists[lang] for lang in labels])
        factors.append(ratio / ratio.sum())
    for other in factors[1:]:
        np.testing.assert_allclose(other, factors[0], rtol=1e-3)
    assert labels[int(np.argmin(factors[0]))] == "Russian"


# ---------------------------------------------------------------------------------------------------------------
# A bad prior: the app's error, nothing changed


@pytest.mark.slow
@pytest.mark.parametrize("endpoint, args", [
    ("/predict", ("Abel", "gru", 3, "flat")),
    ("/predict", ("Abel", "gru", 3, "")),
    ("/predict_details", ("Abel", "rnn", 3, "uniform")),
    ("/trace", ("Abel", "gru", "lists, equal")),
    ("/predict_batch", (["Abel", "Adam"], "gru", 3, "Russian")),
])
def test_a_bad_prior_is_a_clear_error(client, endpoint, args):
    with pytest.raises(AppError, match=BAD_PRIOR):
        client.predict(*args, api_name=endpoint)
    assert client.predict("Abel", "gru", 3, api_name="/predict") == as_json(
        service.predict(app.MODELS, "Abel", "gru", 3))  # the server keeps serving, the default unchanged


def _rest(client, endpoint: str, data) -> tuple[str, object]:
    """POST ``{"data": data}`` to ``/gradio_api/call/<endpoint>`` as a script without gradio_client would, and read
    the event stream: ("complete", the first output) or ("error", the message)."""
    import httpx

    url = client.src.rstrip("/") + "/gradio_api/call/" + endpoint
    response = httpx.post(url, json={"data": data}, timeout=60)
    assert response.status_code == 200, response.text
    stream = httpx.get(f"{url}/{response.json()['event_id']}", timeout=60).text
    kind = stream.split("\n", 1)[0].removeprefix("event: ")
    payload = json.loads(stream.split("data:", 1)[1])
    return kind, payload[0] if kind == "complete" else payload["error"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_a_rest_call_written_before_the_prior_still_answers(client, reference, kind):
    """A raw REST call of the old arity (no prior) gets the lists' answer: the server fills in the left-out last
    argument, as gradio_client does; the same call with "equal" gets the library's equal-prior answer."""
    status, got = _rest(client, "predict", ["Kowalczyk", kind, 3])
    assert status == "complete"
    same_top(got, reference[kind].predict("Kowalczyk", 3))
    status, got = _rest(client, "predict_details", ["Kowalczyk", kind, 3, "equal"])
    assert status == "complete" and got["prior"] == "equal"
    assert got["set"] == reference[kind].predict_set("Kowalczyk", prior="equal")
    status, got = _rest(client, "trace", ["Li", kind])
    assert status == "complete" and got["prior"] == "lists"
    assert np.allclose(got["probs"], reference[kind].trace("Li").probs, atol=1e-6)
    status, got = _rest(client, "predict_batch", [["Qin", "Abel"], kind, 2])
    assert status == "complete"
    assert [row["set"] for row in got] == [reference[kind].predict_set(n) for n in ("Qin", "Abel")]
    status, message = _rest(client, "predict", ["Kowalczyk", kind])  # two short: gradio's own refusal, unchanged
    assert status == "error"
