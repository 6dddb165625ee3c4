"""The app served in-process and called with gradio_client: every public endpoint, checked by value.

Also drives the UI's own (normally private) events on a second instance built with
``build_demo(ui_visibility="undocumented")``, to check and time the exact path a step change takes in the browser.
Medians are written to ``test-artifacts/timings.json``.
"""

import json
import math
import os
import statistics
import time
from pathlib import Path

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
import namecls  # noqa: E402
from namecls.serving import service  # noqa: E402
from namecls.ui.render.html import languages_text  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PUBLIC = {"/predict", "/predict_details", "/trace", "/predict_batch"}
N_TIMED = 20

# What a gradio_client call of a UI event returns: the event's ``outputs`` (namecls/ui/*.py), in that order, less
# the ones the API skips (gr.State, layout such as the units accordion).
PER_STEP = ["step", "letters", "step_label", "trajectory_marks", "neighbours", "map_marks", "heatmap",
            "state_heatmap", "gates", "gradient", "unit_view"]  # ui_next...
TRACED = ["norm_line", "story", "letters_key", "answer", "trajectory_img", "trajectory_key", "decision",
          "contributions", "unit", "units_img", "map_img", "map_key", "map_note", "edits", "k", *PER_STEP]  # ui_trace
BATCH_COLUMNS = ["name", "error", "normalised", "top-1", "probability", "prediction set", "in training as", "top-3"]


def named(outputs, names: list[str]) -> dict:
    """A UI event's outputs (a tuple from gradio_client) by the names of its components."""
    assert len(outputs) == len(names), f"{len(outputs)} outputs, expected {names}"
    return dict(zip(names, outputs))


def _launch(demo):
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    return url


@pytest.fixture(scope="module")
def server():
    url = _launch(app.demo)
    yield url
    app.demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def ui_server():
    """The same app with its UI events callable (undocumented), for driving and timing the UI path."""
    demo = app.build_demo(ui_visibility="undocumented")
    url = _launch(demo)
    yield url
    demo.close()


def _record(name: str, seconds: list[float]) -> float:
    median = statistics.median(seconds)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = {"median_ms": round(1000 * median, 2), "min_ms": round(1000 * min(seconds), 2),
                  "max_ms": round(1000 * max(seconds), 2), "n": len(seconds)}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\n{name}: median {1000 * median:.1f} ms over {len(seconds)} calls")
    return median


# ---------------------------------------------------------------------------------------------------------------
# The public API


@pytest.mark.slow
def test_view_api_lists_exactly_the_public_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == PUBLIC
    assert not api["unnamed_endpoints"]
    params = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in api["named_endpoints"].items()}
    assert params == {"/predict": ["name", "model", "k", "prior"], "/predict_details": ["name", "model", "k", "prior"],
                      "/trace": ["name", "model", "prior"], "/predict_batch": ["names", "model", "k", "prior"]}
    visibility = {d["api_name"]: d["api_visibility"] for d in app.demo.config["dependencies"]}
    assert {f"/{n}" for n, v in visibility.items() if v != "private"} == PUBLIC


def test_ui_events_are_not_callable(client):
    with pytest.raises(Exception):
        client.predict("Nguyen", "gru", 3, "lists", api_name="/ui_classify")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rnn", "gru"])
def test_predict_all_18_sum_to_one(client, model):
    top = client.predict("Nguyen", model, 18, api_name="/predict")
    assert set(top) == set(app.MODELS[model].labels)
    assert sum(top.values()) == pytest.approx(1.0, abs=1e-4)
    assert list(top.values()) == sorted(top.values(), reverse=True)
    assert top == pytest.approx(service.predict(app.MODELS, "Nguyen", model, 18))


def test_predict_defaults_and_k(client):
    top = client.predict("Ślusàrski", api_name="/predict")  # model="gru", k=3
    assert len(top) == 3
    assert top == pytest.approx(service.predict(app.MODELS, "Ślusàrski", "gru", 3))
    assert len(client.predict("Qin", "rnn", 1, api_name="/predict")) == 1


@pytest.mark.slow
@pytest.mark.parametrize("model, low, high", [("rnn", 0.0, 1.0), ("gru", -1.0, 1.0)])
def test_trace_has_one_step_per_character(client, model, low, high):
    out = client.predict("O'Neill", model, api_name="/trace")
    assert out["chars"] == list("O'Neill") and out["normalized"] == "O'Neill" and out["model"] == model
    T = len(out["chars"])
    assert len(out["probs"]) == len(out["hidden"]) == T
    assert all(len(row) == 18 and abs(sum(row) - 1) < 1e-4 for row in out["probs"])
    width = app.MODELS[model].config["model"]["hidden_size"]
    assert all(len(row) == width for row in out["hidden"])
    assert all(low <= v <= high for row in out["hidden"] for v in row)
    final = dict(zip(out["labels"], out["probs"][-1]))
    assert final == pytest.approx(service.predict(app.MODELS, "O'Neill", model, 18), abs=1e-5)
    assert len(out["entropy"]) == T and isinstance(out["low_confidence"], bool)
    if app.MODELS[model].projection is None:
        assert out["map"] is None
    else:
        assert len(out["map"]) == T and all(len(point) == 2 for point in out["map"])
    # Attribution: the change in the final top language's log-probability as each character is read, starting
    # from the uniform 1/18 before the first one, so the changes add up to log p_T(c) - log(1/18).
    top = max(range(len(out["labels"])), key=lambda j: out["probs"][-1][j])
    assert len(out["attribution"]) == T
    assert sum(out["attribution"]) == pytest.approx(math.log(out["probs"][-1][top]) - math.log(1 / 18), abs=1e-3)
    if out["deletion"] is not None:
        assert len(out["deletion"]) == T and all(math.isfinite(v) for v in out["deletion"])
    if out["neighbours"] is not None:
        assert len(out["neighbours"]) == T
        assert all(set(nb) == {"name", "language", "distance"} and nb["language"] in out["labels"]
                   for step in out["neighbours"] for nb in step)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rnn", "gru"])
def test_predict_details_returns_the_flag_and_the_entropy(client, model):
    out = client.predict("Demirkan", model, 4, api_name="/predict_details")
    expected = service.predict_details(app.MODELS, "Demirkan", model, 4)
    assert out["top"] == pytest.approx(expected["top"]) and len(out["top"]) == 4
    assert out["low_confidence"] is expected["low_confidence"]
    assert out["entropy"] == pytest.approx(expected["entropy"]) and 0 <= out["entropy"] <= 2.9
    assert out["low_confidence"] == (out["top_probability"] < out["threshold"])
    assert out["set"] == expected["set"] == app.MODELS[model].predict_set("Demirkan")
    assert out["seen_as"] == expected["seen_as"] == []  # a Turkish name: in no training list
    with pytest.raises(AppError, match="no letters"):
        client.predict("12345", model, 3, api_name="/predict_details")


@pytest.mark.slow
def test_predict_batch_of_1000_names(client):
    base = ["Nguyen", "Qin", "Slaveya", "Fernando", "Demirkan", "Ślusàrski", "O'Neill", "Mike", "Schmidt", "Rossi"]
    names = [base[i % len(base)] + "abcdefghij"[i // len(base) % 10] * (i % 3) for i in range(995)]
    names += ["", "   ", "12345", "😀", "x" * 100]
    start = time.perf_counter()
    rows = client.predict(names, "gru", 3, api_name="/predict_batch")
    elapsed = time.perf_counter() - start
    assert len(rows) == 1000
    assert [r["name"] for r in rows[:995]] == names[:995]
    assert all(r["error"] is None and len(r["top_k"]) == 3 and r["top1"] == next(iter(r["top_k"])) for r in rows[:995])
    assert all(r["error"] and r["top1"] is None for r in rows[995:])
    assert rows[5]["normalized"] == "Slusarskiaa" and rows[5]["name"] == "Ślusàrskiaa"
    assert rows[0]["top_k"] == pytest.approx(service.predict(app.MODELS, names[0], "gru", 3))
    assert elapsed < 60
    rnn_rows = client.predict(names[:10], "rnn", 18, api_name="/predict_batch")
    assert all(sum(r["top_k"].values()) == pytest.approx(1.0, abs=1e-4) for r in rnn_rows)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("", "gru", 3), "name is empty"),
    (("   ", "gru", 3), "name is empty"),
    (("x" * 300, "gru", 3), "too long"),
    (("Abcdefghij" * 7, "gru", 3), "too long"),
    (("12345", "gru", 3), "no letters"),
    (("😀😀😀", "rnn", 3), "no letters"),
    (("Nguyen", "lstm", 3), "unknown model"),
    (("Nguyen", "gru", 0), "k must be"),
    (("Nguyen", "gru", 19), "k must be"),
])
def test_bad_inputs_get_clear_errors(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/predict")
    assert client.predict("Nguyen", "gru", 2, api_name="/predict")  # the server keeps serving


def test_bad_trace_and_batch_inputs(client):
    with pytest.raises(AppError, match="no letters"):
        client.predict("1234", "gru", api_name="/trace")
    with pytest.raises(AppError, match="too many"):
        client.predict(["Li"] * (service.MAX_BATCH_NAMES + 1), "gru", 3, api_name="/predict_batch")


def test_html_is_data_not_markup(client):
    top = client.predict("<script>alert(1)</script>", "gru", 3, api_name="/predict")
    assert len(top) == 3  # classified as the letters it contains
    out = client.predict("<b>Li</b>", "gru", api_name="/trace")
    assert out["normalized"] == "bLib" and out["name"] == "<b>Li</b>"


# ---------------------------------------------------------------------------------------------------------------
# Uploads and the UI's own events


def test_oversized_upload_is_refused_by_the_server(server, tmp_path):
    import httpx

    big = tmp_path / "big.txt"
    big.write_bytes(b"Nguyen\n" * (service.MAX_UPLOAD_BYTES // 7 + 10))
    with big.open("rb") as f:
        response = httpx.post(server.rstrip("/") + "/gradio_api/upload", files={"files": ("big.txt", f)},
                              timeout=30)
    assert response.status_code == 413
    assert client_alive(server)


def client_alive(url):
    return bool(Client(url, verbose=False).predict("Qin", "gru", 1, api_name="/predict"))


@pytest.mark.slow
def test_batch_upload_through_the_ui_event(ui_server, tmp_path):
    c = Client(ui_server, verbose=False)
    good = tmp_path / "people.csv"
    good.write_text("surname,city\nNguyen,Hanoi\n,\n12345,x\n<img src=x onerror=alert(1)>,y\n\n", encoding="utf-8")
    summary, table, download = c.predict(handle_file(str(good)), "Qin\n", "rnn", "lists", api_name="/ui_batch")
    assert summary.startswith("**4** names classified with the RNN") and "**1** could not be read" in summary
    # What went in is said: the file's names and the pasted ones together, the blank row left out (not the last).
    counts, record = summary.split("\n\n")
    assert counts.endswith("(3 from the file and 1 pasted, in that order; 1 blank line skipped.)")
    # ... and what the sets' coverage has been, as beside every set (the test split and real surnames)
    measured = app.MODELS["rnn"].metrics["conformal"]["test"]["coverage"]
    assert record.startswith(f"Over held-out test names, a 90% set held the right language {100 * measured:.1f}%")
    assert [row[0] for row in table["data"]] == ["Nguyen", "12345", "<img src=x onerror=alert(1)>", "Qin"]
    assert table["headers"] == BATCH_COLUMNS
    column = {name: [row[BATCH_COLUMNS.index(name)] for row in table["data"]] for name in BATCH_COLUMNS}
    assert column["prediction set"][1] == column["in training as"][1] == ""
    assert "no letters" in column["error"][1]
    several = seen = 0
    for i, name in ((0, "Nguyen"), (2, "<img src=x onerror=alert(1)>"), (3, "Qin")):  # each name on its own
        details = service.predict_details(app.MODELS, name, "rnn", 3)
        assert column["prediction set"][i] == " or ".join(details["set"]), name
        assert column["in training as"][i] == ", ".join(details["seen_as"]), name
        several, seen = several + (len(details["set"]) > 1), seen + bool(details["seen_as"])
    assert column["in training as"][0] == "Vietnamese"  # Nguyen is a Vietnamese training name of both models
    assert (f"**{several}** with more than one language in their prediction set; **{seen}** in the training "
            f"lists") in summary
    path = download["value"] if isinstance(download, dict) else download  # an update: {"value": path, ...}
    raw = Path(path).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a byte-order mark: spreadsheets read every letter
    assert raw[3:].decode("utf-8").startswith(",".join(BATCH_COLUMNS) + "\nNguyen,,Nguyen,")
    wrong = tmp_path / "names.pdf"
    wrong.write_text("Nguyen")
    with pytest.raises(AppError, match="(?i)invalid file type|not a .csv"):
        c.predict(handle_file(str(wrong)), "", "gru", "lists", api_name="/ui_batch")
    # Nothing to classify is not an error: a plain message, an empty table and no download.
    summary, table, download = c.predict(None, "  ", "gru", "lists", api_name="/ui_batch")
    assert summary.startswith("Nothing to classify yet:") and "upload a .csv" in summary
    assert table["data"] in ([], [[""] * len(BATCH_COLUMNS)]) and table["headers"] == BATCH_COLUMNS
    assert isinstance(download, dict) and download.get("visible") is False


@pytest.mark.slow
def test_classify_gives_the_prediction_set_and_the_training_lists(ui_server):
    c = Client(ui_server, verbose=False)
    for name, model in (("Demirkan", "gru"), ("Yilmaz", "rnn"), ("Nguyen", "rnn"), ("Nguyen", "gru"),
                        ("Brady", "gru")):
        update, norm, answer, _ = c.predict(name, model, 3, "lists", api_name="/ui_classify")
        details = service.predict_details(app.MODELS, name, model, 3)
        label = update["value"]
        assert label["label"] == next(iter(details["top"]))
        # The bars hold the top 3 and every language of the set; a set of several leads, without the big heading.
        bars = [row["label"] for row in label["confidences"]]
        assert bars[:3] == list(details["top"]) and set(details["set"]) <= set(bars)
        assert len(bars) == max(3, len(details["set"])) and update["show_heading"] == (len(details["set"]) == 1)
        alone = " alone" if len(details["set"]) == 1 else ""
        assert f'<div class="answer-set">{languages_text(details["set"])}{alone} <span' in answer
        assert f'data-set-size="{len(details["set"])}"' in answer and "(90% prediction set)" in answer
        measured = app.MODELS[model].metrics["conformal"]["test"]["coverage"]
        assert f"a 90% set held the right language {100 * measured:.1f}% of the time" in answer
        if details["seen_as"]:
            assert f"In the training lists as: {', '.join(details['seen_as'])}." in answer
        else:
            assert "Not in the training lists" in answer
        assert f"Top probability {100 * details['top_probability']:.1f}%" in answer and "nats" in answer


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rnn", "gru"])
def test_classify_under_each_prior_quotes_its_measured_coverage(ui_server, model):
    """The page's prior reaches Classify: under "equal" the set is the library's equal-prior set, the caption says
    so and quotes the coverage measured for that prior on the test split (every language counted equally) and on
    real surnames (checkpoints/outside_lists.json, read here); under the lists' prior, the real-surname coverage too,
    with the advice to expect every language equally."""
    from namecls.inference import CHECKPOINTS

    report = json.loads((CHECKPOINTS / "outside_lists.json").read_text(encoding="utf-8"))["results"][model]
    c = Client(ui_server, verbose=False)
    for prior in ("lists", "equal"):
        update, _, answer, _ = c.predict("Kowalczyk", model, 3, prior, api_name="/ui_classify")
        clf = namecls.load(model)  # not the app's copy
        expected = clf.predict_set("Kowalczyk", prior=prior)
        assert f'data-set-size="{len(expected)}"' in answer
        assert update["value"]["label"] == clf.predict("Kowalczyk", 1, prior)[0][0]
        rows = report[prior]
        real = rows["final"] if "final" in rows else rows["dev"]
        assert f"On {real['n']:,} real surnames from outside the lists, it held the right one " \
               f"{100 * real['coverage']:.1f}% of the time ({real['mean_size']:.1f} languages on average)" in answer
        if prior == "equal":
            assert "every language equally likely)" in answer
            assert (f"every language counted equally, a 90% set held the right language "
                    f"{100 * rows['test']['coverage']:.1f}% of the time") in answer
        else:
            assert "expect every language equally likely (above)" in answer


@pytest.mark.slow
def test_step_change_path(ui_server):
    """The browser's path: trace once (kept in gr.State), then Next re-renders from the state."""
    c = Client(ui_server, verbose=False)
    out = named(c.predict("Nguyen", "gru", 3, "lists", api_name="/ui_trace"), TRACED)
    sets = service.trace(app.MODELS, "Nguyen", "gru")["sets"]  # the prediction set after each prefix
    assert out["step"]["value"] == 6 and out["step"]["maximum"] == 6  # a slider update: 6 characters
    assert "Character <b>6</b> of 6" in out["letters"]
    assert f" · prediction set: {languages_text(sets[5])}</div>" in out["letters"]
    assert f"{languages_text(sets[5])}{' alone' if len(sets[5]) == 1 else ''} <span" in out["answer"]
    assert "In the training lists as: Vietnamese." in out["answer"]
    assert 'class="current" data-step="5"' in out["letters"]
    assert 'class="step-mark" data-step="5"' in out["trajectory_marks"]
    assert "Vietnamese" in out["decision"] and out["trajectory_img"].count("<img") == 1
    first = named(c.predict(1, api_name="/ui_step"), PER_STEP)
    assert first["step"] == 1 and "Character <b>1</b> of 6" in first["letters"]
    position, seconds = 1, []
    for i in range(N_TIMED):
        start = time.perf_counter()
        new = named(c.predict(position, api_name="/ui_next"), PER_STEP)
        seconds.append(time.perf_counter() - start)
        expected = min(position + 1, 6)
        assert new["step"] == expected and f"Character <b>{expected}</b> of 6" in new["letters"]
        assert f" · prediction set: {languages_text(sets[expected - 1])}</div>" in new["letters"]
        assert f'class="current" data-step="{expected - 1}"' in new["letters"]  # the outlined letter
        assert f'class="step-mark" data-step="{expected - 1}"' in new["trajectory_marks"]  # the trajectory's band
        assert new["heatmap"].count('class="current"') == 1  # the heatmap's marked column (its header)
        assert new["step_label"]["label"] in app.MODELS["gru"].labels
        if app.MODELS["gru"].projection is not None:  # the map's current point
            assert f'class="map-current" data-step="{expected - 1}"' in new["map_marks"]
            assert f"<code>{'Nguyen'[:expected]}</code>" in new["neighbours"]
        position = 1 if expected == 6 else expected
    _record("step_change_ui_next", seconds)
    back = named(c.predict(3, api_name="/ui_prev"), PER_STEP)
    assert back["step"] == 2 and 'class="current" data-step="1"' in back["letters"]
    assert named(c.predict(1, api_name="/ui_prev"), PER_STEP)["step"] == 1  # stays on the first character


@pytest.mark.slow
def test_predict_timing(client):
    seconds = []
    for i in range(N_TIMED):
        start = time.perf_counter()
        client.predict(["Nguyen", "Qin", "Demirkan", "O'Neill"][i % 4], "gru", 5, api_name="/predict")
        seconds.append(time.perf_counter() - start)
    _record("predict", seconds)


def test_compare_answers_a_new_prior_in_place(ui_server):
    """The prior is chosen above the tabs, so Compare may be in view when it changes: its columns are compared
    again under the new prior (no answer of the other prior beside the new choice); with nothing shown yet, the
    change waits until the tab is opened."""
    c = Client(ui_server, verbose=False)
    untouched = c.predict("Kowalczyk", 3, "equal", api_name="/ui_compare_prior")
    assert not any("prediction set, every language equally likely" in str(o) for o in untouched)
    shown = c.predict("Kowalczyk", 3, "lists", api_name="/ui_compare")
    assert not any("prediction set, every language equally likely" in str(o) for o in shown)
    again = c.predict("Kowalczyk", 3, "equal", api_name="/ui_compare_prior")
    answers = [o for o in again if isinstance(o, str) and 'class="answer"' in o]
    assert len(answers) == 2 and all("prediction set, every language equally likely" in a for a in answers)
    for kind, answer in zip(("rnn", "gru"), answers):
        assert f'data-set-size="{len(app.MODELS[kind].predict_set("Kowalczyk", prior="equal"))}"' in answer
