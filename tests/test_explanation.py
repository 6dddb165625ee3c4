"""The explanation in /trace and in Step through: the story, the one-letter variants, the answer's logit split over
the units, the cell's gates and the gradient reaching back — each checked against an independent computation
(the weights, the classifier's own predict, autograd)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from namecls.serving import service
from namecls.data.names import pad_batch
from namecls.ui.render import html

from test_ui import dom

pytestmark = pytest.mark.recorded

NAMES = ["Nakamura", "Yilmaz", "O'Connell", "Q"]


@pytest.fixture(scope="module")
def models():
    return service.load_models()


def _logits(clf, name: str) -> np.ndarray:
    x, lengths = pad_batch([name])
    with torch.no_grad():
        return clf.model(x, lengths)[0].double().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", NAMES)
def test_trace_carries_each_part_of_the_explanation(models, kind, name):
    clf = models[kind]
    out = service.trace(models, name, kind)
    t = clf.trace(name)
    logits = _logits(clf, t.normalized.text)
    answer = clf.labels[int(np.argmax(logits))]
    # The story is the trace's.
    assert out["story"] == t.story and 3 <= len(out["story"]) <= 6
    # The logit, split: bias + the last letter's own term + every unit's weight × value = the model's own logit.
    c = out["contributions"]
    assert c["language"] == answer and len(c["units"]) == clf.model.config.hidden_size
    total = c["bias"] + c["input"] + sum(u["contribution"] for u in c["units"])
    assert total == pytest.approx(logits[clf.labels.index(answer)], abs=1e-4)
    assert c["logit"] == pytest.approx(logits[clf.labels.index(answer)], abs=1e-4)
    assert all(u["contribution"] == pytest.approx(u["weight"] * u["state"], abs=1e-6) for u in c["units"])
    pushes = [u["contribution"] for u in c["units"]]
    assert pushes == sorted(pushes, reverse=True)
    assert (c["input"] == 0.0) is (kind == "gru")
    # Gates: the GRU's update and reset gates of every layer after every letter; none for the RNN.
    if kind == "gru":
        L, T, H = clf.model.config.num_layers, len(t.chars), clf.model.config.hidden_size
        for key in ("update", "reset"):
            assert np.asarray(out["gates"][key]).shape == (L, T, H)
            assert 0 <= np.min(out["gates"][key]) and np.max(out["gates"][key]) <= 1
    else:
        assert out["gates"] is None
    # The gradient: one norm a letter; the last entry the answer reads comes from the readout alone.
    grad = np.asarray(out["gradient"])
    assert grad.shape == (len(t.chars),) and np.all(grad >= 0)
    probs = torch.softmax(torch.tensor(logits) / clf.temperature, 0).numpy()
    direct = (np.eye(len(clf.labels))[clf.labels.index(answer)] - probs) / clf.temperature  # d log p / d logits
    W = clf.model.readout.weight.detach().double().numpy()
    if kind == "gru":
        assert grad[-1] == pytest.approx(np.linalg.norm(W.T @ direct), rel=1e-4)
    else:  # the RNN's answer reads the letter and the state *before* it: the state after the last letter gets 0
        assert grad[-1] == 0.0
        if len(t.chars) > 1:
            V = clf.model.config.vocab_size
            assert grad[-2] == pytest.approx(np.linalg.norm(W[:, V:].T @ direct), rel=1e-4)
    # The variants, each answered as predict answers it.
    assert out["edits"] and len(out["edits"]) <= 6
    for e in out["edits"]:
        top, p = clf.predict(e["name"], 1)[0]
        assert (e["top"], e["probability"]) == (top, pytest.approx(p, abs=1e-5))
        assert set(e) == {"name", "edit", "top", "probability"}


def test_the_variants_that_change_the_answer_come_first(models):
    clf = models["gru"]
    edits = clf.edits("Nakamura")
    own = clf.predict("Nakamura", 1)[0][0]
    changed = [e["changes_answer"] for e in edits]
    assert changed == sorted(changed, reverse=True)  # those that change it, then those that move it most
    assert all(e["top"] != own for e in edits if e["changes_answer"])
    korean = clf.edits("Nakamura", target="Korean", n=3)
    assert [e["target_probability"] for e in korean] == sorted((e["target_probability"] for e in korean),
                                                               reverse=True)
    for e in korean:
        assert e["target_probability"] == pytest.approx(dict(clf.predict(e["name"], 18))["Korean"], abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The fragments the view draws from them


def _signed(text: str) -> float:
    return float(text.replace("−", "-"))


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_contributions_html_shows_the_largest_pushes_and_what_the_rest_add(models, kind):
    clf = models[kind]
    t = clf.trace("Nakamura")
    c = t.contributions
    n_layers = t.layers.shape[0]
    tree = dom(html.contributions_html(c, t.labels, n_layers, n=6))
    up, down = tree.find_all("table", "contrib")
    pushes = np.array([u["contribution"] for u in c["units"]])
    shown_up = [_signed(td.text) for td in up.find_all("td", "num")]
    shown_down = [_signed(td.text) for td in down.find_all("td", "num")]
    assert shown_up == pytest.approx(sorted(pushes[pushes > 0], reverse=True)[:6], abs=0.006)
    assert shown_down == pytest.approx(sorted(pushes[pushes < 0])[:6], abs=0.006)
    text = tree.text
    assert f"{c['logit']:.2f}".replace("-", "−") in text
    rest = pushes.sum() - sum(sorted(pushes[pushes > 0], reverse=True)[:6]) - sum(sorted(pushes[pushes < 0])[:6])
    match = re.search(r"other (\d+) units add ([+−]\d+\.\d+) together", text)
    assert int(match.group(1)) == len(pushes) - len(shown_up) - len(shown_down)
    assert _signed(match.group(2)) == pytest.approx(rest, abs=0.006)
    half = re.search(r"Half of the upward push comes from (?:just )?(\d+) unit", text)
    ups = np.sort(pushes[pushes > 0])[::-1]
    assert int(half.group(1)) == int(np.argmax(np.cumsum(ups) >= ups.sum() / 2)) + 1


def test_gates_html_shows_each_units_update_gate_as_a_percentage(models):
    clf = models["gru"]
    t = clf.trace("Yilmaz")
    units = [(1, 3), (0, 7)]
    tree = dom(html.gates_html(t.gates, t.chars, 2, "gru", 2, units))
    rows = tree.find("table", "gates").find_all("tr")[1:]
    z = np.asarray(t.gates["update"])
    for row, (l, u) in zip(rows, units):
        assert [int(td.text) for td in row.kids("td")] == [int(f"{100 * v:.0f}") for v in z[l, :, u]]
    averages = rows[len(units):]
    for l, row in enumerate(averages):
        assert [int(td.text) for td in row.kids("td")] == [int(f"{100 * v:.0f}") for v in z[l].mean(axis=1)]
    assert sum("current" in td.classes for td in rows[0].kids("td")) == 1


def test_gates_html_of_the_rnn_is_the_letters_share_of_the_push(models):
    clf = models["rnn"]
    t = clf.trace("Yilmaz")
    tree = dom(html.gates_html(t.gates, t.chars, 0, "rnn", 1, [(0, 5)]))
    row = tree.find("table", "gates").find_all("tr")[1]
    a, b = (np.abs(np.asarray(t.gates[k])[0, :, 5]) for k in ("input_drive", "recurrent_drive"))
    assert [int(td.text) for td in row.kids("td")] == [int(f"{100 * v:.0f}") for v in a / (a + b)]


def test_gradient_html_draws_each_models_gradient_against_its_largest(models):
    t = {kind: models[kind].trace("Shirinsky-Shikhmatov") for kind in ("rnn", "gru")}
    chars = t["gru"].chars
    tree = dom(html.gradient_html({k: (v.gradient, v.labels) for k, v in t.items()}, chars, 3))
    for row, kind in zip(tree.find("table", "gradient").find_all("tr")[1:], ("rnn", "gru")):
        norms = t[kind].gradient.norms
        heights = [float(re.search(r"height:(\d+)%", str(td.find("span").attrs["style"])).group(1))
                   for td in row.kids("td")]
        assert heights == pytest.approx(100 * norms / norms.max(), abs=0.51)
    assert "RNN" in tree.text and "GRU" in tree.text and "per letter on average" in tree.text
