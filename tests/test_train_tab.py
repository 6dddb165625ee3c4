"""The "Train your own" tab through the app's own events (gradio_client on an in-process server): a short
training on three languages, its downloadable checkpoint zip, "Yours" in Classify and as a column of Compare (and
a message once the server has let it go), the Stop button, one training at a time (a second one queues), the
capped store of trained models, and the names data fetched on first use where it is not on disk (offline: the
fetch is replaced by one that returns a zip built from the real folder, a tampered zip, or a network error).
Needs the names data (CI has it)."""

import importlib
import io
import os
import re
import threading
import time
import urllib.error
import zipfile

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import gradio as gr  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.utils import Status  # noqa: E402

import app  # noqa: E402
import namecls  # noqa: E402
import namecls.data.names  # noqa: E402
from namecls.ui import yours  # noqa: E402
from test_app import TRACED  # noqa: E402  (/ui_trace's outputs as the client returns them)


THREE = ["Chinese", "Japanese", "Russian"]
RUNNING = (Status.PROCESSING, Status.ITERATING)  # a generator's job iterates
# cell, hidden size, GRU layers, learning rate, epochs, time budget, languages, the watched name
SHORT = ("gru", 32, 1, 0.01, 2, 5, THREE, "Nguyen")


@pytest.fixture(scope="module")
def demo(data_dir):
    os.environ["NAMECLS_DATA_DIR"] = str(data_dir)  # namecls.fit reads it when the tab gives no folder
    blocks = app.build_demo(ui_visibility="undocumented")
    blocks.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    yield blocks
    blocks.close()


@pytest.fixture(scope="module")
def url(demo):
    return demo.local_url


@pytest.mark.slow
def test_a_short_training_gives_a_model_that_classifies_and_downloads(url):
    client = Client(url, verbose=False)
    progress, loss, accuracy, watched, result, download, *radios = client.predict(*SHORT, api_name="/ui_train")
    assert "done" in progress and "Validation accuracy" in result and "**yours**" in result
    from namecls.training.fit import validation_accuracy

    for kind, label in (("rnn", "RNN"), ("gru", "GRU")):  # the committed models, on the same validation names
        assert f"| committed {label}¹ | {100 * validation_accuracy(app.MODELS[kind], THREE):.1f}% |" in result
    assert len(loss["data"]) >= 2 and len(accuracy["value"]["data"]) >= 1  # the curves were drawn
    lowest = min(row[1] for row in accuracy["value"]["data"])  # the accuracy axis reaches just below its curve
    assert accuracy["y_lim"][1] == 1.0 and lowest - 0.15 <= accuracy["y_lim"][0] <= lowest
    assert watched["label"] in THREE  # the watched name's last answer is one of the three languages
    assert all(choice == ["Yours", "yours"] for radio in radios for choice in radio["choices"][-1:])
    path = download["value"] if isinstance(download, dict) else download
    downloaded = namecls.load(path["path"] if isinstance(path, dict) else path)
    assert downloaded.labels == THREE
    # "Yours" in Classify answers what the downloaded checkpoint answers.
    label, _, answer, _ = client.predict("Nguyen", "yours", 3, "lists", api_name="/ui_classify")
    assert label["value"]["label"] == downloaded.predict("Nguyen", k=1)[0][0] and "prediction set" in answer
    assert "This model knows only 3 languages (Chinese, Japanese and Russian): its answer is always one of them" \
        in answer
    assert "knows only" not in client.predict("Nguyen", "gru", 3, "lists", api_name="/ui_classify")[2]
    # The Top-k sliders follow the chosen model: a k the 3-language model cannot give becomes its 3, not an error,
    # and the slider offers 1-3 until the 18-language GRU is chosen again.
    client.predict("Nguyen", "gru", 6, "lists", api_name="/ui_classify")  # k = 6, then "Yours" is picked
    label, _, _, k = client.predict("Nguyen", "yours", 6, "lists", api_name="/ui_reclassify")
    assert len(label["value"]["confidences"]) == 3 and (k["maximum"], k["value"]) == (3, 3)
    _, _, _, k = client.predict("Nguyen", "gru", 3, "lists", api_name="/ui_reclassify")
    assert (k["maximum"], k["value"]) == (len(app.MODELS["gru"].labels), 3)
    traced = dict(zip(TRACED, client.predict("Nguyen", "yours", 6, "lists", api_name="/ui_trace")))
    assert (traced["k"]["maximum"], traced["k"]["value"]) == (3, 3) and len(traced["step_label"]["confidences"]) == 3
    # A session without a trained model cannot choose it.
    # refused by gradio or by us
    with pytest.raises(Exception, match="(?i)400 Bad Request|unknown model|choose one of|not in the list of choices"):
        Client(url, verbose=False).predict("Nguyen", "yours", 3, "lists", api_name="/ui_classify")


@pytest.mark.slow
def test_stop_ends_a_training_early(url):
    client = Client(url, verbose=False)
    job = client.submit("gru", 64, 1, 0.01, 30, 60, THREE, "", api_name="/ui_train")
    deadline = time.monotonic() + 60
    while job.status().code not in RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    started = time.monotonic()  # at once: a fast machine could finish a short training before a later Stop
    client.predict(api_name="/ui_train_stop")
    result = job.result(timeout=120)[4]
    assert "stopped by stop" in result
    assert time.monotonic() - started < 45  # far sooner than the 60 s budget and 30 epochs


@pytest.mark.slow
def test_one_training_at_a_time(url):
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    job1 = first.submit("gru", 64, 1, 0.01, 30, 15, THREE, "", api_name="/ui_train")  # ~15 s of training
    deadline = time.monotonic() + 60
    while job1.status().code not in RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    job2 = second.submit(*SHORT, api_name="/ui_train")
    seen = set()
    while not job2.done() and time.monotonic() < deadline + 60:
        seen.add((job2.status().code, job1.done()))
        time.sleep(0.1)
    assert (Status.IN_QUEUE, False) in seen  # the second waited while the first was training
    assert "Validation accuracy" in job1.result()[4] and "Validation accuracy" in job2.result()[4]


@pytest.mark.slow
def test_the_store_of_trained_models_is_capped_and_ages():
    store = yours.TrainedModels(capacity=2, seconds=0.5)
    for session in "abc":
        store.put(session, object())
    assert len(store) == 2 and store.get("a") is None and store.get("c") is not None
    time.sleep(0.6)
    assert store.get("c") is None  # too old
    store.put("d", object())  # putting clears every model past its age ("b")
    assert len(store) == 1
    store.drop("d")
    assert store.get("d") is None and len(store) == 0


@pytest.mark.slow
def test_the_store_says_why_a_model_is_gone():
    store = yours.TrainedModels(capacity=2, seconds=0.5)
    assert store.lookup("never") == yours.Mine()  # never trained: no model and no reason
    store.put("a", "model a")
    store.put("b", "model b")
    first = store.lookup("a")
    assert first.classifier == "model a" and first.gone is None and first.serial is not None
    store.put("a", "model a2")  # trained again: a new serial
    assert store.lookup("a").serial != first.serial
    store.put("c", "model c")  # the cap pushes out the least recently trained: b
    assert store.lookup("b") == yours.Mine(gone="cap")
    assert "the 2 most recently trained models" in yours.gone_message("cap", store)
    time.sleep(0.6)
    assert store.lookup("c") == yours.Mine(gone="age") and store.get("c") is None
    assert "keeps a trained model for 30 minutes" in yours.gone_message("age")
    store.put("b", "model b2")  # training again brings it back
    assert store.lookup("b").classifier == "model b2" and store.lookup("b").gone is None
    store.drop("c")  # the session ended: nothing to say about it any more
    assert store.lookup("c") == yours.Mine()


# --- Compare with "Yours" ---------------------------------------------------------------------------------------

COMPARE_PARTS = ("label", "answer", "letters", "trajectory", "decision")


def _compare(client, name="Nguyen", k=3) -> dict:
    """/ui_compare's outputs by name (the client leaves out the state and the column): the note (what the
    session's model is, or why it is gone) and {kind: {part: value}}."""
    note, *shown = client.predict(name, k, "lists", api_name="/ui_compare")
    views = {kind: dict(zip(COMPARE_PARTS, shown[5 * i: 5 * i + 5])) for i, kind in enumerate(("rnn", "gru", "yours"))}
    return {"note": note, "views": views}


def _column_shown(demo, session: str) -> bool:
    """Whether the Compare event's own handler shows the "Yours" column to ``session`` (what the client omits)."""
    handler = next(fn for fn in demo.fns.values() if fn.api_name == "ui_compare").fn
    out = handler("Nguyen", 3, "lists", gr.Request(session_hash=session))
    column = next(block for block in out if getattr(block, "elem_id", None) == "compare-yours-column")
    return out[column].visible


def _empty(view: dict) -> bool:
    return not view["label"] and all(not view[part] for part in COMPARE_PARTS[1:])


@pytest.mark.slow
def test_compare_shows_yours_beside_rnn_and_gru_and_says_when_it_is_gone(demo, url):
    client = Client(url, verbose=False)
    before = _compare(client)  # not trained yet: two columns, no message
    assert not before["note"] and _empty(before["views"]["yours"])
    assert not _column_shown(demo, client.session_hash)
    assert before["views"]["gru"]["label"]["label"] == app.MODELS["gru"].predict("Nguyen", k=1)[0][0]

    *_, download, _, _, _ = client.predict(*SHORT, api_name="/ui_train")
    path = download["value"] if isinstance(download, dict) else download
    mine = namecls.load(path["path"] if isinstance(path, dict) else path)
    after = _compare(client, "Fujita", 2)
    assert _column_shown(demo, client.session_hash)
    assert "GRU you trained" in after["note"] and "3 languages (Chinese, Japanese and Russian)" in after["note"]
    yours_view = after["views"]["yours"]
    label = yours_view["label"]  # an update: the values and the column's title
    assert label.get("label") == "Yours (GRU)", label
    expected = mine.predict("Fujita", k=2)
    assert label["value"]["label"] == expected[0][0]
    assert [c["label"] for c in label["value"]["confidences"]] == [lang for lang, _ in expected]
    assert "prediction set" in yours_view["answer"] and "table" in yours_view["letters"]
    assert "<img" in yours_view["trajectory"] and "Yours:" in yours_view["decision"]
    for kind in ("rnn", "gru"):  # the committed models' columns are as before, for the new name
        assert after["views"][kind]["label"]["label"] == app.MODELS[kind].predict("Fujita", k=1)[0][0]
    assert not _column_shown(demo, Client(url, verbose=False).session_hash)  # another session: no third column

    # Newer trainings of other sessions push this session's model out of the capped store: the tab says so.
    others = [f"other-session-{i}" for i in range(yours.TRAINED.capacity)]
    try:
        for other in others:
            yours.TRAINED.put(other, object())
        gone = _compare(client)
        shown = _column_shown(demo, client.session_hash)
    finally:
        for other in others:
            yours.TRAINED.drop(other)
    assert not shown and "you trained in" not in gone["note"] and _empty(gone["views"]["yours"])
    assert "no longer on the server" in gone["note"] and "Train it again" in gone["note"]
    assert f"the {yours.TRAINED.capacity} most recently trained models" in gone["note"]
    assert gone["views"]["rnn"]["label"]["label"] == app.MODELS["rnn"].predict("Nguyen", k=1)[0][0]


# --- a gone "Yours" in Classify, Step through and Batch ------------------------------------------------------------



def _handler(demo, name: str):
    return next(fn for fn in demo.fns.values() if fn.name == name).fn


def _push_out(session: str) -> list[str]:
    """Newer trainings of other sessions, as many as the cap: ``session``'s model goes (the caller drops them)."""
    others = [f"other-session-{i}" for i in range(yours.TRAINED.capacity)]
    for other in others:
        yours.TRAINED.put(other, object())
    assert yours.TRAINED.lookup(session) == yours.Mine(gone="cap")
    return others


def _is_gone_notice(html: str) -> bool:
    return ('class="notice"' in html and "no longer on the server" in html and "Train it again" in html
            and f"the {yours.TRAINED.capacity} most recently trained models" in html
            and "the GRU is chosen in its place" in html)


@pytest.mark.slow
def test_a_gone_yours_is_a_message_in_classify_step_through_and_batch_which_then_stop_offering_it(demo, url):
    client = Client(url, verbose=False)
    client.predict(*SHORT, api_name="/ui_train")  # the tabs' radios now offer "Yours"
    label, _, answer, _ = client.predict("Fujita", "yours", 3, "lists", api_name="/ui_classify")
    assert label["value"]["label"] in THREE and "prediction set" in answer
    for choices in ("/ui_classify_choices", "/ui_trace_choices", "/ui_batch_choices"):  # it is there: no change
        assert client.predict("yours", api_name=choices) == {"__type__": "update"}
    traced = dict(zip(TRACED, client.predict("Fujita", "yours", 3, "lists", api_name="/ui_trace")))
    assert traced["step_label"]["label"] in THREE and "<img" in traced["trajectory_img"]

    others = _push_out(client.session_hash)
    try:
        # Classify: the message in place of the answer, nothing of the earlier answer beside it, no error.
        label, norm, answer, _ = client.predict("Fujita", "yours", 3, "lists", api_name="/ui_classify")
        assert not label and norm == "" and _is_gone_notice(answer) and "prediction set" not in answer
        # "Yours" picked with no name yet
        label, norm, answer, _ = client.predict("", "yours", 3, "lists", api_name="/ui_reclassify")
        assert not label and _is_gone_notice(answer)
        # Step through: the message in place of the trace; nothing of the earlier trace (of "Yours") left.
        for endpoint in ("/ui_trace", "/ui_trace_tab"):
            traced = dict(zip(TRACED, client.predict("Fujita", "yours", 3, "lists", api_name=endpoint)))
            assert _is_gone_notice(traced["answer"]), endpoint
            left = {key: value for key, value in traced.items()
                    if key not in ("answer", "step", "unit", "edits", "k") and value not in ("", None, {})}
            assert not left, (endpoint, left)
        # Batch: the message in place of the table, no file to download.
        summary, table, download = client.predict(None, "Qin\nFujita\n", "yours", "lists", api_name="/ui_batch")
        assert _is_gone_notice(summary) and not table["data"]
        assert not (download.get("visible", True) if isinstance(download, dict) else download)
        # Step through takes Classify's choice over without "Yours" (the GRU in its place).
        take_over = _handler(demo, "take_over")
        out = {getattr(block, "elem_id", None): value
               for block, value in take_over("Fujita", "yours", gr.Request(session_hash=client.session_hash)).items()}
        assert out["trace-name"] == "Fujita"
        assert out["trace-model"].choices == [("RNN", "rnn"), ("GRU", "gru")] and out["trace-model"].value == "gru"
        # After each tab's event its radio stops offering "Yours": the GRU is chosen in its place, and the
        # session can no longer send "yours" to that tab.
        for choices in ("/ui_classify_choices", "/ui_trace_choices", "/ui_batch_choices"):
            update = client.predict("yours", api_name=choices)
            assert update["choices"] == [["RNN", "rnn"], ["GRU", "gru"]] and update["value"] == "gru", choices
        assert client.predict("rnn", api_name="/ui_batch_choices")["value"] == "rnn"  # another choice stays
        for endpoint, args in (("/ui_classify", ("Fujita", "yours", 3, "lists")),
                               ("/ui_trace", ("Fujita", "yours", 3, "lists")),
                               ("/ui_batch", (None, "Qin\n", "yours", "lists"))):
            with pytest.raises(Exception, match="not in the list of choices|400 Bad Request"):  # gradio refuses
                client.predict(*args, api_name=endpoint)
        # The committed models still answer in every tab.
        label, _, answer, _ = client.predict("Fujita", "gru", 3, "lists", api_name="/ui_classify")
        assert label["value"]["label"] == app.MODELS["gru"].predict("Fujita", k=1)[0][0] and "prediction set" in answer
        summary, table, _ = client.predict(None, "Qin\n", "gru", "lists", api_name="/ui_batch")
        assert "**1** names classified with the GRU" in summary
    finally:
        for other in others:
            yours.TRAINED.drop(other)
    # Another session, which never trained, is not told about a model it never had; nor is its radio changed.
    fresh = Client(url, verbose=False)
    assert fresh.predict("gru", api_name="/ui_classify_choices") == {"__type__": "update"}
    take_over = _handler(demo, "take_over")
    assert take_over("Hong", "gru", gr.Request(session_hash=fresh.session_hash)) is not None


# --- the names data fetched on first use ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_archive(data_dir) -> bytes:
    """A zip laid out like the tutorial's data.zip, built from the real names folder: it passes the SHA-256s."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(data_dir.glob("*.txt")):
            zf.writestr(f"data/names/{path.name}", path.read_bytes())
        zf.writestr("data/eng-fra.txt", "Go.\tVa !\n")  # the rest of data.zip, not extracted
    return buffer.getvalue()


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """A server without the names data: no $NAMECLS_DATA_DIR, nothing beside the project, an empty cache. The
    fetch must be replaced by each test (this one fails the test if reached: no real network in tests)."""
    monkeypatch.delenv("NAMECLS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(namecls.data.names, "PROJECT_ROOT", tmp_path / "project")
    monkeypatch.setattr(namecls.data.names, "LOCAL_DATA_DIR", tmp_path / "local")

    def unexpected(*args, **kwargs):
        raise AssertionError("the test did not replace the fetch")

    monkeypatch.setattr(namecls.data.names, "fetch_archive", unexpected)
    assert not namecls.data.names.data_on_disk()
    return tmp_path / "cache" / "namecls"


def _fake_fetch(monkeypatch, answer) -> list:
    """Replace the network fetch by ``answer`` (bytes, or an exception to raise); returns the list of its calls."""
    calls = []

    def fetch(url, timeout=60.0, max_bytes=namecls.data.names.MAX_ARCHIVE_BYTES):
        calls.append(url)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(namecls.data.names, "fetch_archive", fetch)
    return calls


def _leftovers(cache) -> list[str]:
    """What a failed fetch left in the cache folder (its lock file aside)."""
    return sorted(p.name for p in cache.iterdir() if p.name != ".names.lock") if cache.exists() else []


@pytest.mark.slow
def test_the_first_training_fetches_the_data_once(url, no_data, monkeypatch, real_archive, data_dir):
    calls = _fake_fetch(monkeypatch, real_archive)
    client = Client(url, verbose=False)
    progress, *_, result, download, _, _, _ = client.predict(*SHORT, api_name="/ui_train")
    assert "done" in progress and "Validation accuracy" in result and download.get("visible") is True
    assert calls == [namecls.data.names.DATA_URL]
    cached = no_data / "names"
    assert namecls.data.names.holds_names(cached)  # every file, each with its published SHA-256
    assert {p.name: p.read_bytes() for p in cached.glob("*.txt")} == \
        {p.name: p.read_bytes() for p in data_dir.glob("*.txt")}
    assert namecls.data.names.default_data_dir() == (cached, "the copy downloaded into the cache")
    # From now on the data is on disk: a second training (another session) fetches nothing.
    progress, *_, result, _, _, _, _ = Client(url, verbose=False).predict(*SHORT, api_name="/ui_train")
    assert "Validation accuracy" in result and calls == [namecls.data.names.DATA_URL]


def _refused(url) -> tuple[str, list]:
    """A training on a server whose fetch fails: the progress message and the other outputs."""
    client = Client(url, verbose=False)
    progress, *others = client.predict(*SHORT, api_name="/ui_train")
    assert yours.TRAINED.get(client.session_hash) is None
    return progress, others


def _unchanged(others) -> bool:
    """Nothing but the message changed: curves, watched name, result, download and the other tabs' model choices
    all came back as empty updates (gradio's "leave it as it is")."""
    return len(others) == 8 and all(out == {"__type__": "update"} for out in others)


def test_a_tampered_archive_is_refused_with_a_message_and_leaves_nothing(url, no_data, monkeypatch, real_archive,
                                                                         data_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(real_archive)) as source, zipfile.ZipFile(buffer, "w") as tampered:
        for member in source.namelist():
            content = source.read(member)
            tampered.writestr(member, content + b"Evilson\n" if member.endswith("Russian.txt") else content)
    calls = _fake_fetch(monkeypatch, buffer.getvalue())
    progress, others = _refused(url)
    assert calls == [namecls.data.names.DATA_URL]
    assert "Cannot train" in progress and "Russian.txt: SHA-256" in progress and "NAMECLS_DATA_DIR" in progress
    assert _unchanged(others), others
    assert _leftovers(no_data) == []  # nothing written: neither the names folder nor a half-extracted one
    assert not namecls.data.names.data_on_disk()


def test_a_corrupt_archive_is_refused(url, no_data, monkeypatch, real_archive):
    _fake_fetch(monkeypatch, real_archive[: len(real_archive) // 2])  # cut off mid-download
    progress, others = _refused(url)
    assert "Cannot train" in progress and "not a zip file" in progress and "NAMECLS_DATA_DIR" in progress
    assert _unchanged(others), others
    assert _leftovers(no_data) == []


def test_a_network_error_is_a_message_saying_how_to_fix_it(url, no_data, monkeypatch):
    calls = _fake_fetch(monkeypatch, urllib.error.URLError("[Errno -3] Temporary failure in name resolution"))
    progress, others = _refused(url)
    assert len(calls) == 1
    assert "Cannot train" in progress and "could not download" in progress and "name resolution" in progress
    assert "set NAMECLS_DATA_DIR" in progress
    assert _unchanged(others), others
    assert _leftovers(no_data) == []


def test_a_wrong_data_dir_is_not_replaced_by_a_download(url, no_data, monkeypatch, tmp_path):
    monkeypatch.setenv("NAMECLS_DATA_DIR", str(tmp_path / "nowhere"))  # the operator's choice: say it is wrong
    calls = _fake_fetch(monkeypatch, AssertionError("must not fetch"))
    progress, others = _refused(url)
    assert calls == [] and "Cannot train" in progress and "NAMECLS_DATA_DIR" in progress
    assert _unchanged(others), others


@pytest.mark.slow
def test_two_sessions_at_once_download_once(no_data, monkeypatch, real_archive):
    calls = []

    def slow(url, timeout=60.0, max_bytes=namecls.data.names.MAX_ARCHIVE_BYTES):
        calls.append(url)
        time.sleep(0.3)  # long enough for the other caller to arrive meanwhile
        return real_archive

    monkeypatch.setattr(namecls.data.names, "fetch_archive", slow)
    found = []
    threads = [threading.Thread(target=lambda: found.append(namecls.data.names.find_or_download_data()))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(calls) == 1 and found == [no_data / "names"] * 2


class _Response(io.BytesIO):
    """An HTTP answer that does not say its length (as a chunked one): the size cap must count what arrives."""
    headers: dict = {}


def test_the_fetch_refuses_an_archive_too_large(tmp_path, monkeypatch, real_archive):
    path = tmp_path / "data.zip"
    path.write_bytes(real_archive)
    assert namecls.data.names.fetch_archive(path.as_uri(), timeout=5) == real_archive
    small = len(real_archive) - 1
    with pytest.raises(RuntimeError, match=f"is {len(real_archive):,} bytes, more than the {small:,} expected"):
        namecls.data.names.fetch_archive(path.as_uri(), timeout=5, max_bytes=small)  # its declared length is refused
    monkeypatch.setattr(namecls.data.names.urllib.request, "urlopen", lambda url, timeout: _Response(real_archive))
    assert namecls.data.names.fetch_archive("https://example.invalid/data.zip") == real_archive
    with pytest.raises(RuntimeError, match=f"sent more than the {small:,} bytes expected"):
        namecls.data.names.fetch_archive("https://example.invalid/data.zip", max_bytes=small)


def test_a_names_file_declared_too_large_is_refused_before_decompressing(tmp_path, real_archive):
    big = namecls.data.names.MAX_NAMES_FILE_BYTES + 2  # a few KB compressed: a small archive can unpack to a lot
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(real_archive)) as source, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        for member in source.namelist():
            bomb.writestr(member, b"A\n" * (big // 2) if member.endswith("Arabic.txt") else source.read(member))
    assert len(buffer.getvalue()) < len(real_archive) + 50_000
    with pytest.raises(RuntimeError, match=f"Arabic.txt in the archive is {big:,} bytes, more than the"):
        namecls.data.names.extract_names(buffer.getvalue(), tmp_path / "names")
    assert not (tmp_path / "names").exists()


# --- one training at a time, held by the work itself (issue 18) -------------------------------------------------

train_tab = importlib.import_module("namecls.ui.tabs.train")
TWO = ["Chinese", "Japanese"]
# A tiny training that runs until it is stopped: 2 languages, hidden size 16, 30 epochs, a 60 s budget.
LONG = ("gru", 16, 1, 0.01, 30, 60, TWO, "")


@pytest.fixture(scope="module")
def warm(data_dir):
    """One tiny fit in this process first: the first fit of a process imports scikit-learn and torch's compiler
    (~4 s, once), which no stop can interrupt; the timings asserted here are those of every later training."""
    namecls.fit(data_dir, languages=TWO, hidden_size=16, epochs=1)


@pytest.fixture
def cool_down(monkeypatch, warm):
    """A fresh cool-down for the test (the server's shared one is left as it was: every test connects from
    127.0.0.1, and an abandoned training would keep the next tests' trainings waiting)."""
    fresh = train_tab.CoolDown()
    monkeypatch.setattr(train_tab, "COOL_DOWN", fresh)
    return fresh


@pytest.fixture
def thread_errors(monkeypatch) -> list:
    """Exceptions that escaped a thread (each would be a traceback in the server's log)."""
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


def _fit_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("namecls-fit-") and t.is_alive()]


class _Sampler:
    """Looks at the training threads every 5 ms while it runs: the most that ever ran at once, and all it saw."""

    def __init__(self):
        self.most, self.seen, self._done = 0, set(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._done.is_set():
            alive = _fit_threads()
            self.most = max(self.most, len(alive))
            self.seen.update(alive)
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def _run_handler(demo):
    return next(fn for fn in demo.fns.values() if fn.api_name == "ui_train").fn


def _component(demo, elem_id: str):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def _request(session: str, host: str | None = "203.0.113.5") -> gr.Request:
    return gr.Request(session_hash=session, client={"host": host, "port": 1})


def _until_training(demo, generator) -> None:
    """Step the event's generator until the fit's own first progress message (a curve drawn): it is training."""
    loss = _component(demo, "train-loss")
    deadline = time.monotonic() + 60
    while loss not in next(generator):
        assert time.monotonic() < deadline, "no progress message from the fit within 60 s"


def _ends_within(thread: threading.Thread, seconds: float) -> float:
    began = time.monotonic()
    thread.join(seconds + 5)  # more than asked, to say by how much it missed
    took = time.monotonic() - began
    assert not thread.is_alive() and took < seconds, f"the training ran on {took:.2f} s after its event was closed"
    return took


def test_a_closed_event_stops_its_training_within_a_second_and_frees_the_slot(demo, cool_down, thread_errors):
    """Issue 18: gradio closes a generator whose page went away. The training stops then (not at its 60 s budget),
    its thread ends within a second, the slot is free, and no model is kept for the gone session."""
    generator = _run_handler(demo)(*LONG, _request("closed-at-once"))
    _until_training(demo, generator)
    (thread,) = _fit_threads()
    assert train_tab.SLOT.locked() and "closed-at-once" in train_tab._STOPS
    generator.close()  # what gradio does when the page has gone (GeneratorExit at the yield)
    _ends_within(thread, 1.0)
    assert not train_tab.SLOT.locked() and "closed-at-once" not in train_tab._STOPS
    assert yours.TRAINED.get("closed-at-once") is None and thread_errors == []


def _join_and_leave(demo, url, arguments) -> dict:
    """What a browser does, over HTTP: join the queue for a training, read the event stream up to the first
    progress message (or to the end, if it ends first), then close the connection. Returns that last message."""
    import json
    import uuid

    import httpx

    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == "ui_train")
    session = uuid.uuid4().hex[:11]
    with httpx.Client(base_url=url, timeout=60) as http:
        joined = http.post("/gradio_api/queue/join", json={
            "data": list(arguments), "fn_index": fn_index, "trigger_id": None, "session_hash": session})
        assert joined.status_code == 200, joined.text
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") in ("process_generating", "process_completed"):
                    return message  # leaving closes the stream and the connection
    raise AssertionError("the event stream ended without a message")


@pytest.mark.slow
def test_a_closed_page_stops_its_training_and_trainings_never_overlap(demo, url, cool_down, monkeypatch):
    """The attack of issue 18 over HTTP: start a training, close the page at its first progress message, again
    and again (the cool-down off, to test the slot alone). Before, 3–8 trainings ran at once; now at most one ever
    runs, and each ends within a second of gradio seeing its page gone."""
    monkeypatch.setattr(cool_down, "seconds", 0.0)
    with _Sampler() as sampler:
        for attempt in range(3):
            assert _join_and_leave(demo, url, LONG)["msg"] == "process_generating"
            (thread,) = _fit_threads()  # training (for 60 s, were it not stopped)
            # Gradio sees the closed page at the event's next yield (at most TICK_SECONDS away) and closes it.
            _ends_within(thread, 1.0 + train_tab.TICK_SECONDS)
            assert not train_tab.SLOT.locked()
    assert sampler.most == 1 and len(sampler.seen) == 3  # three trainings, one after the other


def test_a_client_that_leaves_over_http_is_told_to_wait(demo, url, cool_down):
    assert _join_and_leave(demo, url, LONG)["msg"] == "process_generating"
    (thread,) = _fit_threads()
    _ends_within(thread, 1.0 + train_tab.TICK_SECONDS)
    assert cool_down.wait("127.0.0.1") > 8  # the client is its address (every test client's here)
    refused = _join_and_leave(demo, url, LONG)  # at once, from the same address: refused, nothing started
    assert refused["msg"] == "process_completed" and not refused["success"]
    assert re.search(r"please wait (9|10) s before starting another", refused["output"]["error"])
    assert _fit_threads() == [] and not train_tab.SLOT.locked()


@pytest.mark.slow
def test_a_cancelled_training_stops_within_a_second(url, cool_down):
    """gradio_client's cancel (the /cancel route) closes the event's generator too: the training stops."""
    job = Client(url, verbose=False).submit(*LONG, api_name="/ui_train")
    deadline = time.monotonic() + 60
    while not _fit_threads() or job.status().code not in RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (thread,) = _fit_threads()
    job.cancel()
    _ends_within(thread, 1.0 + train_tab.TICK_SECONDS)
    assert not train_tab.SLOT.locked()


def test_a_training_waits_briefly_for_one_that_is_ending(demo, cool_down):
    """A training asked for while an abandoned one is still stopping waits for it (well under the 2 s allowed) and
    then runs: never beside it."""
    first = _run_handler(demo)(*LONG, _request("left-first", "203.0.113.6"))
    _until_training(demo, first)
    with _Sampler() as sampler:
        first.close()
        began = time.monotonic()
        second = _run_handler(demo)(*LONG, _request("asked-next", "203.0.113.7"))
        next(second)  # its first yield: it holds the slot and its thread started
        waited = time.monotonic() - began
        (thread,) = _fit_threads()
        assert thread.name == "namecls-fit-asked-ne" and train_tab.SLOT.locked()
        second.close()
        _ends_within(thread, 1.0)
    assert sampler.most == 1 and waited < train_tab.SLOT_WAIT_SECONDS and not train_tab.SLOT.locked()


def test_a_training_is_refused_when_the_slot_stays_held(demo, cool_down, monkeypatch):
    monkeypatch.setattr(train_tab, "SLOT_WAIT_SECONDS", 0.2)
    assert train_tab.SLOT.acquire(timeout=5)  # as a training that does not end would hold it
    try:
        with pytest.raises(gr.Error, match="Another training is still running on this server") as refused:
            next(_run_handler(demo)(*LONG, _request("refused")))
    finally:
        train_tab.SLOT.release()
    assert refused.value.title == "One training at a time"
    assert _fit_threads() == [] and len(cool_down) == 0  # nothing started, nothing to cool down from


@pytest.mark.slow
def test_a_client_that_leaves_a_training_waits_before_the_next(demo, cool_down):
    """Restarting in a loop: a client whose training was left waits COOL_DOWN_SECONDS from that one's start (the
    message says how long); another client does not; a training that ran to its end leaves no wait."""
    run = _run_handler(demo)
    generator = run(*LONG, _request("looping-1", "198.51.100.7"))
    _until_training(demo, generator)
    (thread,) = _fit_threads()
    generator.close()
    thread.join(5)
    for session in ("looping-2", "looping-3"):  # the same client, in new sessions: refused, nothing started
        with pytest.raises(gr.Error, match=r"please wait (9|10) s before starting another") as refused:
            next(run(*LONG, _request(session, "198.51.100.7")))
        assert refused.value.title == "Please wait" and _fit_threads() == []
    other = run(*LONG, _request("someone-else", "198.51.100.8"))  # another client trains at once
    next(other)
    (thread,) = _fit_threads()
    other.close()
    thread.join(5)
    # A training that ends by itself with its page open (one epoch) leaves its client free to train again.
    short = ("gru", 16, 1, 0.01, 1, 5, TWO, "")
    for session in ("patient-1", "patient-2"):
        *_, last = run(*short, _request(session, "198.51.100.9"))
        assert "Validation accuracy" in last[_component(demo, "train-result")]
    assert cool_down.wait("198.51.100.9") == 0 and cool_down.wait("198.51.100.7") > 0
    yours.TRAINED.drop("patient-1")
    yours.TRAINED.drop("patient-2")


def test_the_cool_down_counts_from_the_start_and_is_capped():
    clients = train_tab.CoolDown(seconds=10, capacity=3)
    token = clients.start("a", now=100.0)
    assert clients.wait("a", now=100.0) == 10 and clients.wait("a", now=107.5) == 2.5
    assert clients.wait("a", now=110.0) == 0 and clients.wait("b", now=100.0) == 0
    clients.finished("a", token)  # ran to its end: no wait
    assert clients.wait("a", now=101.0) == 0
    old = clients.start("a", now=101.0)
    clients.start("a", now=102.0)
    clients.finished("a", old)  # an older training's end does not clear the newer one's start
    assert clients.wait("a", now=103.0) == 9
    for i, client in enumerate("bcd"):
        clients.start(client, now=103.0 + i)
    assert len(clients) == 3 and clients.wait("a", now=106.0) == 0  # the cap forgot the least recent start
    clients.start("e", now=114.5)  # b and c are past their cool-down: dropped when the next one starts
    assert len(clients) == 2 and clients.wait("d", now=114.5) == pytest.approx(0.5)
    assert train_tab.client_of(_request("s", "192.0.2.1")) == "192.0.2.1"
    assert train_tab.client_of(_request("s", None)) == "s"  # no host: the session
    assert train_tab.client_of(gr.Request(session_hash="s2")) == "s2"


@pytest.mark.parametrize("position, message", [
    (1, "the hidden size must be a whole number from 16 to 256"),
    (2, "the number of GRU layers must be a whole number from 1 to 2"),
    (3, "the learning rate must be a number from 0.0001 to 0.1"),
    (4, "the number of epochs must be a whole number from 1 to 30"),
    (5, "the time budget (seconds) must be a number from 5 to 60"),
])
def test_an_empty_number_box_is_a_clear_message(demo, position, message, cool_down):
    for value in (None, float("nan"), "", 1e6):
        arguments = list(LONG)
        arguments[position] = value
        with pytest.raises(gr.Error) as refused:
            next(_run_handler(demo)(*arguments, _request("empty-box")))
        assert refused.value.message == message
        assert refused.value.title == "Cannot do that" and not refused.value.print_exception
    assert _fit_threads() == [] and not train_tab.SLOT.locked()


@pytest.mark.slow
def test_an_empty_learning_rate_through_the_app_says_so_without_a_traceback(url, capfd):
    """Before: an empty learning-rate box gave the error `null` and two tracebacks in the server's log."""
    from gradio_client.exceptions import AppError

    capfd.readouterr()
    with pytest.raises(AppError, match=r"the learning rate must be a number from 0\.0001 to 0\.1"):
        Client(url, verbose=False).predict("gru", 32, 1, None, 2, 5, THREE, "", api_name="/ui_train")
    log = capfd.readouterr()
    assert "Traceback" not in log.err + log.out and _fit_threads() == []
