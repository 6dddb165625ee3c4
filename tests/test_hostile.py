"""Hostile input through the live app: every public endpoint, the UI's own events, raw REST calls and uploads.

Each hostile request gets a valid answer or a clear error (never gradio's generic "error" and never an HTTP 5xx),
the server answers a normal request afterwards, user text comes back as data (escaped wherever the app returns
HTML), and one user's hostile upload does not disturb another user's requests.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import threading

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from namecls.serving import service  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # gradio's own, in its queue

# The messages a bad name may get; anything else (e.g. gradio's generic error) fails the test.
CLEAR = re.compile(r"name is empty|too long|no letters|not valid text|must be a string|names must be a list|too many"
                   r"|prior must be one of 'lists', 'equal'")

HOSTILE_NAMES = [
    "\x00", "Ngu\x00yen", "\x00\x00\x00", "\x1b[31mRed\x1b[0m", "\x07\x08\x7f", "Li\r\nQin", "\t\n\r",
    "\u202eNguyen", "\u200f\u200e\u202a", "\u200b\u200b", "\ufeffQin",
    "😀", "👨‍👩‍👧‍👦 Smith", "🇫🇷🇩🇪",
    "e\u0301" * 60, "Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o\u0358",
    "王小明", "김민준", "山田太郎" * 10, "ﷺ", "٣٤٥",
    "x" * 10_000, "Ab" * 40, "李" * 40,
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "{{7*7}}", "${7*7}", "'; DROP TABLE names; --",
    "%s%s%n", "../../etc/passwd", "   ",
]


@pytest.fixture(scope="module")
def server():
    demo = app.build_demo(ui_visibility="undocumented")  # the UI's own events callable too
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def assert_alive(client) -> None:
    top = client.predict("Nguyen", "gru", 3, api_name="/predict")
    assert top == pytest.approx(service.predict(app.MODELS, "Nguyen", "gru", 3))


def answer_or_clear_error(call):
    """The answer of ``call()``, or None when it raised a clear AppError."""
    try:
        return call()
    except AppError as err:
        assert CLEAR.search(str(err)), f"unclear error: {err}"
        return None


# ---------------------------------------------------------------------------------------------------------------
# The public API


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:24])
def test_hostile_names_get_an_answer_or_a_clear_error(client, name):
    try:
        expected = service.predict(app.MODELS, name, "gru", 18)
    except ValueError:
        expected = None
    top = answer_or_clear_error(lambda: client.predict(name, "gru", 18, api_name="/predict"))
    assert (top is None) == (expected is None)
    if top is not None:
        assert top == pytest.approx(expected) and sum(top.values()) == pytest.approx(1.0, abs=1e-4)
        out = client.predict(name, "rnn", api_name="/trace")
        assert out["name"] == name  # the raw name comes back as data, unchanged
        assert "".join(out["chars"]) == out["normalized"] and len(out["probs"]) == len(out["chars"])
        assert all(abs(sum(row) - 1) < 1e-4 for row in out["probs"])
    else:
        with pytest.raises(AppError, match=CLEAR):
            client.predict(name, "rnn", api_name="/trace")
        assert_alive(client)


@pytest.mark.slow
def test_hostile_names_on_every_other_public_endpoint(client):
    """Any further public endpoint taking a name (e.g. /predict_details) answers or gives a clear error."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    others = [e for e, info in api.items() if e not in ("/predict", "/trace", "/predict_batch")
              and info["parameters"] and info["parameters"][0]["parameter_name"] == "name"]
    for endpoint in others:
        for name in HOSTILE_NAMES[::3]:
            answer_or_clear_error(lambda: client.predict(name, api_name=endpoint))
    assert_alive(client)


@pytest.mark.slow
def test_hostile_names_in_one_batch(client):
    rows = client.predict(HOSTILE_NAMES + ["Qin"], "gru", 3, api_name="/predict_batch")
    assert len(rows) == len(HOSTILE_NAMES) + 1 and rows[-1]["error"] is None
    for name, row in zip(HOSTILE_NAMES, rows):
        try:
            norm = service.check_name(name)
        except ValueError:
            assert CLEAR.search(row["error"]) and row["top_k"] == {} and row["top1"] is None
            continue
        assert row["error"] is None and row["name"] == name and row["normalized"] == norm.text
        assert row["top_k"] == pytest.approx(service.predict(app.MODELS, name, "gru", 3), abs=1e-6)  # batched
        alone = service.predict_details(app.MODELS, name, "gru", 3)  # the set and lists the other tabs show
        assert row["set"] == alone["set"] and row["seen_as"] == alone["seen_as"], name
    assert_alive(client)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    ((None, "gru", 3), "must be a string"),
    ((12345, "gru", 3), "must be a string"),
    ((["Nguyen"], "gru", 3), "must be a string"),
    (({"name": "Nguyen"}, "gru", 3), "must be a string"),
    (("Nguyen", None, 3), "unknown model"),
    (("Nguyen", "<b>gru</b>", 3), "unknown model"),
    (("Nguyen", "gru", "three"), "k must be"),
    (("Nguyen", "gru", 1e308), "k must be"),
    (("Nguyen", "gru", -1), "k must be"),
    (("Nguyen", "gru", None), "k must be"),
])
def test_wrong_types_get_clear_errors(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/predict")
    assert_alive(client)


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["/predict", "/predict_details", "/predict_batch"])
def test_k_is_an_int_from_gradio_client_and_raw_rest(server, client, endpoint):
    """k = 3 works from gradio_client and as JSON 3 over REST (both arrive as an int); a float (even 3.0), a bool,
    a string or a 400-digit number gets the clear message."""
    first = ["Nguyen"] if endpoint == "/predict_batch" else "Nguyen"
    assert client.predict(first, "gru", 3, api_name=endpoint)
    for k in (3.0, True, "3", "1e1", "1_0", 10**400):
        with pytest.raises(AppError, match="k must be a whole number from 1 to 18"):
            client.predict(first, "gru", k, api_name=endpoint)
    url = server.rstrip("/") + "/gradio_api/call" + endpoint
    for k, ok in (("3", True), ("3.0", False), ("1e1", False), ("true", False), ("1" + "0" * 400, False)):
        body = '{"data": [%s, "gru", %s]}' % (json.dumps(first), k)
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
        assert response.status_code == 200, response.text
        stream = httpx.get(f"{url}/{response.json()['event_id']}", timeout=60).text
        assert stream.startswith("event: complete" if ok else "event: error"), (k, stream[:300])
        if not ok:
            message = json.loads(stream.split("data:", 1)[1])["error"]
            assert message.startswith("k must be a whole number from 1 to 18") and len(message) < 200
    assert_alive(client)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gru\n", " gru ", "\trnn", "gru\x00", "ｇｒｕ", "GRU" * 10_000])
def test_model_is_exactly_rnn_or_gru(client, model):
    with pytest.raises(AppError, match="choose one of 'rnn', 'gru'") as info:
        client.predict("Nguyen", model, 3, api_name="/predict")
    assert len(str(info.value)) < 300
    with pytest.raises(AppError, match="choose one of 'rnn', 'gru'"):
        client.predict(["Nguyen"], model, 3, api_name="/predict_batch")
    assert client.predict("Nguyen", "GRU", 3, api_name="/predict") == client.predict("Nguyen", "gru", 3,
                                                                                   api_name="/predict")


@pytest.mark.slow
def test_batch_of_hostile_values_reports_each_row(client):
    names = [None, 3, ["x"], {"a": 1}, "", "😀", "x" * 10_000, "Nguyen", "<b>Li</b>"]
    rows = client.predict(names, "rnn", 3, api_name="/predict_batch")
    assert len(rows) == len(names)
    assert all(row["error"] and row["top1"] is None for row in rows[:7])
    assert all(len(row["name"]) <= 100 for row in rows)  # a huge bad name is not echoed back whole
    assert rows[7]["error"] is None and rows[8]["name"] == "<b>Li</b>" and rows[8]["normalized"] == "bLib"
    for bad in (None, "Nguyen", {"names": ["Qin"]}):
        with pytest.raises(AppError, match="names must be a list"):
            client.predict(bad, "gru", 3, api_name="/predict_batch")
    assert_alive(client)


@pytest.mark.slow
@pytest.mark.parametrize("endpoint, body", [
    ("predict", '{"data": ["Nguyen"]}'),  # too few values
    ("predict", '{"data": []}'),
    ("predict", '{"data": null}'),
    ("predict", '{}'),
    ("predict", "not json"),
    ("predict", "[1, 2]"),
    ("predict", '{"data": ["\\ud800", "gru", 3]}'),  # a lone surrogate, valid JSON
    ("trace", '{"data": ["Li\\ud800\\u0000", "gru"]}'),
    ("predict", '{"data": ["Nguyen", "gru", 3, 4, 5]}'),  # too many values
    ("predict", '{"data": ["Nguyen", "gru", 3, "flat"]}'),  # a bad prior
    ("predict", '{"data": ["Nguyen", "gru"]}'),  # two short: not filled in
    ("predict_batch", '{"data": [[null, 1, "Qin"], "gru", 3]}'),
    ("predict", json.dumps({"data": ["x" * 2_000_000, "gru", 3]})),  # a 2 MB name
])
def test_raw_rest_calls_never_get_a_server_error(server, client, endpoint, body):
    base = server.rstrip("/") + "/gradio_api/call/"
    response = httpx.post(base + endpoint, content=body, headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        event_id = response.json()["event_id"]
        stream = httpx.get(f"{base}{endpoint}/{event_id}", timeout=60)
        assert stream.status_code == 200
        assert re.search(r"^event: (complete|error)$", stream.text, re.M), stream.text[:300]
        if "error" in stream.text.split("\n", 1)[0]:
            payload = json.loads(stream.text.split("data:", 1)[1])
            assert payload["error"] is None or CLEAR.search(payload["error"])  # gradio's own arity check: null
    assert_alive(client)


# ---------------------------------------------------------------------------------------------------------------
# User text in the HTML the app returns

EVIL = "<img src=x onerror=alert(1)><script>alert('x')</script><i id=pwn>Li</i>"
EVIL_MARKUP = ["<img", "<script", "<i id=pwn>"]  # tags of EVIL: never in any HTML the app returns (as markup)


def _html_outputs(outputs) -> list[str]:
    return [o for o in outputs if isinstance(o, str) and "<" in o]


def assert_no_markup(html: str) -> None:
    for markup in EVIL_MARKUP:
        assert markup not in html.replace("<img src=\"data:image/png", ""), f"{markup!r} in {html[:300]!r}"


def test_classify_shows_html_names_as_text(client):
    label, norm_line, *rest = client.predict(EVIL, "gru", 3, "lists", api_name="/ui_classify")
    assert "<code>&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in norm_line
    for html in _html_outputs([norm_line, *rest]):
        assert_no_markup(html)


@pytest.mark.slow
def test_step_through_and_compare_show_html_names_as_text(client):
    outputs = client.predict(EVIL, "gru", 3, "lists", api_name="/ui_trace")
    htmls = _html_outputs(outputs) + _html_outputs(client.predict(3, api_name="/ui_next"))
    htmls += _html_outputs(client.predict(EVIL, 3, "lists", api_name="/ui_compare"))
    assert len(htmls) >= 20  # ui_trace ~15, ui_next 5, ui_compare 8
    assert any("&lt;img src=x onerror=alert(1)&gt;" in html for html in _html_outputs(outputs))  # shown, as text
    for html in htmls:
        assert_no_markup(html)
    answers = [h for h in htmls if 'class="answer"' in h]
    assert len(answers) == 3  # Step through's, and each model's in Compare
    assert all("(90% prediction set)" in h for h in answers)


def test_batch_table_holds_html_names_as_plain_strings(client):
    summary, table, _ = client.predict(None, f"{EVIL}\nQin\n", "gru", "lists", api_name="/ui_batch")
    assert [row[0] for row in table["data"]] == [EVIL, "Qin"]
    headers = table["headers"]
    for row, name in zip(table["data"], (EVIL, "Qin")):  # the set and lists of the letters it holds, as text
        details = service.predict_details(app.MODELS, name, "gru", 3)
        assert row[headers.index("prediction set")] == " or ".join(details["set"])
        assert row[headers.index("in training as")] == ", ".join(details["seen_as"])
    assert EVIL not in summary
    tables = [c["props"] for c in app.demo.config["components"] if c["type"] == "dataframe"]
    assert tables and all(t["datatype"] in ("str", ["str"] * len(t.get("headers") or [])) for t in tables)


def test_error_messages_shown_in_the_browser_are_escaped(client, tmp_path):
    bad = tmp_path / "names.csv"
    bad.write_bytes(b"Li\x00")
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad)), "", "gru", "lists", api_name="/ui_batch")
    message = str(info.value)
    assert "not a text file" in message and "'" not in message and "&#x27;names.csv&#x27;" in message


# ---------------------------------------------------------------------------------------------------------------
# Uploads

UPLOADS = [
    ("names.exe", b"Nguyen\n", "(?i)invalid file type"),
    ("names.html", b"<script>alert(1)</script>\n", "(?i)invalid file type"),
    ("names", b"Nguyen\n", "(?i)invalid file type"),
    ("rows.csv", b"name\n" + b"Li\n" * 100_000, "100,000 names is too many: at most 10,000"),
    ("image.csv", bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(range(256)) * 8, "not a text file"),
    ("latin.csv", bytes(range(128, 256)) * 16, "not UTF-8 text"),
    ("mixed.txt", "Nguyen\nQin\n".encode() + "Müller\n".encode("latin-1") + "Ślusàrski\n".encode(),
     "line 3 is in another encoding"),
]


@pytest.mark.slow
@pytest.mark.parametrize("filename, content, message", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_bad_uploads_are_refused_with_a_message(client, tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)), "", "gru", "lists", api_name="/ui_batch")
    assert_alive(client)


@pytest.mark.slow
@pytest.mark.parametrize("filename, content", [("empty.csv", b""), ("blank.txt", b"\n \n\t\n"),
                                               ("header-only.csv", b"name\n")])
def test_empty_uploads_get_a_plain_message(client, tmp_path, filename, content):
    """A file with no names is not an error: the summary says there is nothing to classify, the table is empty
    and no CSV is offered."""
    path = tmp_path / filename
    path.write_bytes(content)
    summary, table, download = client.predict(handle_file(str(path)), "", "gru", "lists", api_name="/ui_batch")
    assert summary.startswith("Nothing to classify yet:") and "upload a .csv or .txt file" in summary
    assert not [row for row in table["data"] if any(cell not in ("", None) for cell in row)]
    assert isinstance(download, dict) and download.get("visible") is False
    assert_alive(client)


@pytest.mark.slow
@pytest.mark.parametrize("filename, content", [
    ("utf8-bom.csv", codecs.BOM_UTF8 + "surname,city\nMüller,Köln\nNguyen,Hanoi\n".encode()),
    ("utf16.txt", codecs.BOM_UTF16_LE + "Müller\r\nNguyen\r\n".encode("utf-16-le")),
    ("utf16be.csv", codecs.BOM_UTF16_BE + "name\nMüller\nNguyen\n".encode("utf-16-be")),
    ("upper.CSV", "Müller\nNguyen\n".encode()),
])
def test_other_encodings_are_read(client, tmp_path, filename, content):
    path = tmp_path / filename
    path.write_bytes(content)
    summary, table, _ = client.predict(handle_file(str(path)), "", "gru", "lists", api_name="/ui_batch")
    # name, normalised
    assert [[row[0], row[2]] for row in table["data"]] == [["Müller", "Muller"], ["Nguyen", "Nguyen"]]
    assert "**2** names" in summary


def test_oversized_upload_is_refused(server, client, tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"Nguyen\n" * (service.MAX_UPLOAD_BYTES // 7 + 1000))
    with pytest.raises(Exception, match="(?i)maximum file size"):  # gradio_client checks before sending
        client.predict(handle_file(str(big)), "", "gru", "lists", api_name="/ui_batch")
    with big.open("rb") as f:  # and the server refuses it when sent anyway
        response = httpx.post(server.rstrip("/") + "/gradio_api/upload", files={"files": ("big.txt", f)},
                              timeout=60)
    assert response.status_code == 413
    assert_alive(client)


@pytest.mark.slow
def test_hostile_uploads_do_not_disturb_other_users(server, tmp_path):
    """While one user sends a 100,000-row CSV, an oversized file and a 10,000-name batch, another user's requests
    get exactly the answers they get alone."""
    rows = tmp_path / "rows.csv"
    rows.write_bytes(b"name\n" + b"Kowalski\n" * 100_000)
    big = tmp_path / "big.txt"
    big.write_bytes(b"Li\n" * (service.MAX_UPLOAD_BYTES // 3 + 10))
    names = ["Nguyen", "Qin", "O'Neill", "Ślusàrski", "Demirkan"]
    expected = {n: service.predict(app.MODELS, n, "rnn", 5) for n in names}
    failures, done = [], threading.Event()

    def attacker():
        c = Client(server, verbose=False)
        try:
            while not done.is_set():
                with pytest.raises(AppError, match="too many"):
                    c.predict(handle_file(str(rows)), "", "gru", "lists", api_name="/ui_batch")
                with big.open("rb") as f:
                    assert httpx.post(server.rstrip("/") + "/gradio_api/upload", files={"files": ("big.txt", f)},
                                      timeout=60).status_code == 413
                assert len(c.predict(["Kowalski"] * service.MAX_BATCH_NAMES, "gru", 3,
                                     api_name="/predict_batch")) == service.MAX_BATCH_NAMES
        except BaseException as err:  # noqa: BLE001 - reported below
            failures.append(err)

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    try:
        user = Client(server, verbose=False)
        for i in range(10):
            name = names[i % len(names)]
            assert user.predict(name, "rnn", 5, api_name="/predict") == pytest.approx(expected[name], abs=0)
    finally:
        done.set()
        thread.join(timeout=120)
    assert not failures, failures


@pytest.mark.slow
@pytest.mark.parametrize("filename", ["..", "a/../..", ".", "", "x\x00y", "../../etc/passwd", "con", "\u202etxt.exe"])
def test_hostile_upload_file_names_never_escape_or_hide_their_bytes(server, client, filename):
    """A file name gradio refuses ("..": 400) leaves its temp file in gradio's folder: the upload space keeps that
    request's bytes reserved (for a cache lifetime) rather than give them back. Every other name is stored inside
    gradio's upload folder and counted there."""
    from namecls.ui import server as limits

    boundary = "hostile-name"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n\r\n'
            f"Qin\r\n--{boundary}--\r\n").encode()
    before = limits.UPLOAD_SPACE.used
    response = httpx.post(server.rstrip("/") + "/gradio_api/upload", content=body, timeout=30,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}",
                                   "x-forwarded-for": f"192.0.2.{len(filename)}"})  # not the other tests' bucket
    assert response.status_code in (200, 400), response.text
    assert limits.UPLOAD_SPACE.used - before == limits.UploadSpace.charge(len(body))  # counted either way
    if response.status_code == 200:
        (path,) = response.json()
        assert os.path.realpath(path).startswith(os.path.realpath(app.demo.GRADIO_CACHE) + os.sep)
    assert_alive(client)
