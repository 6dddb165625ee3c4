"""The server stays bounded: public API calls leave no result behind in gradio's per-session state, upload
requests are capped in files and bytes, and the cache, session and download limits are the ones written down.

Runs the real app in-process and calls it with gradio_client and raw HTTP (``namecls/ui/server.py`` holds the
settings and their worst cases; ``bench/soak.py`` measures memory and disk under load; ``tests/test_disk_caps.py``
attacks the space of the files written for download).
"""

import json
import os
import tempfile
import time
from pathlib import Path

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import httpx  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402

import app  # noqa: E402
from namecls.serving import service  # noqa: E402
from namecls.ui import server  # noqa: E402

NAMES = [f"Name{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(2000)]


@pytest.fixture(scope="module")
def served():
    demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    yield demo, url
    demo.close()


def stored_values(demo) -> list:
    """Every output value gradio holds in its sessions' configs right now."""
    return [config["props"]["value"] for session in list(demo.state_holder.session_data.values())
            for config in list(session.config_values.values())
            if isinstance(config, dict) and (config.get("props") or {}).get("value") is not None]


@pytest.mark.slow
def test_the_limits_are_the_ones_written_down(served):
    demo, _ = served
    assert demo.delete_cache == server.DELETE_CACHE == (server.CACHE_SECONDS, server.CACHE_SECONDS)
    assert demo.state_holder.capacity == server.SESSION_CAPACITY
    assert server.MAX_REQUEST_BYTES > service.MAX_UPLOAD_BYTES  # one full-size file still fits
    # Downloads: one space for the process, a rate per client, defaults as written in server.py.
    assert server.OUTPUT_SPACE.capacity == server.MAX_OUTPUT_DISK_BYTES
    assert server.EXPORT_RATE.per_minute == server.EXPORTS_PER_MINUTE == server.EXPORT_RATE.burst
    if not os.environ.get("NAMECLS_OUTPUT_SPACE_MB") and not os.environ.get("NAMECLS_EXPORTS_PER_MINUTE"):
        assert (server.MAX_OUTPUT_DISK_BYTES, server.EXPORTS_PER_MINUTE) == (300 * 2**20, 20)
    # The largest zip the Train tab makes (measured: a 3.2 MB checkpoint staged, a 2.5 MB zip) fits its reservation,
    # and the largest export (10,000 rows of ≤ 860 B) fits the space many times over.
    assert server.ZIP_RESERVE_BYTES >= server.OutputSpace.charge(int(5.7e6))
    assert server.MAX_OUTPUT_DISK_BYTES >= 30 * server.OutputSpace.charge(service.MAX_BATCH_NAMES * 860)


@pytest.mark.slow
def test_public_api_results_are_not_kept_per_session(served):
    demo, url = served
    results = []
    for _ in range(6):  # six scripts, six fresh sessions, one 2,000-name batch each
        results.append(Client(url, verbose=False).predict(NAMES, "gru", 3, api_name="/predict_batch"))
    assert all(len(r) == len(NAMES) for r in results)
    big = [v for v in stored_values(demo) if isinstance(v, list) and len(v) == len(NAMES)]
    # Right after the calls gradio holds some of the results; the sweeper drops them within two of its periods.
    deadline = time.monotonic() + 3 * server.SWEEP_SECONDS + 5
    while big and time.monotonic() < deadline:
        time.sleep(0.2)
        big = [v for v in stored_values(demo) if isinstance(v, list) and len(v) == len(NAMES)]
    assert big == []
    assert len(demo.state_holder.session_data) >= 6  # the sessions themselves remain, each small


def test_drop_stored_outputs_forgets_values_but_not_state(served):
    demo, url = served
    client = Client(url, verbose=False)
    client.predict(["Nguyen", "Qin"], "rnn", 2, api_name="/predict_batch")
    server.drop_stored_outputs(demo)
    assert stored_values(demo) == [] and server.drop_stored_outputs(demo) == 0
    # gr.State values live elsewhere and stay: a session's Step-through state is not touched by the sweep.
    assert all(isinstance(session.state_data, dict) for session in demo.state_holder.session_data.values())


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "namecls-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
             f"Content-Type: text/plain\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_one_small_file_uploads(served):
    _, url = served
    body, kind = _multipart([("names.txt", b"Nguyen\nQin\n")])
    response = httpx.post(url.rstrip("/") + "/gradio_api/upload", content=body, headers={"content-type": kind})
    assert response.status_code == 200 and len(response.json()) == 1


def test_an_upload_request_with_many_files_is_refused(served):
    _, url = served
    body, kind = _multipart([(f"n{i}.txt", b"Nguyen\n") for i in range(60)])
    response = httpx.post(url.rstrip("/") + "/gradio_api/upload", content=body, headers={"content-type": kind})
    assert response.status_code == 413 and "at most 1 file" in response.text


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_an_upload_request_over_the_byte_cap_is_refused(served, declared):
    _, url = served
    body, kind = _multipart([("big.txt", b"A" * (server.MAX_REQUEST_BYTES + 10))])
    content = body if declared else iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
    response = httpx.post(url.rstrip("/") + "/gradio_api/upload", content=content,
                          headers={"content-type": kind}, timeout=30)
    assert response.status_code == 413 and f"{server.MAX_REQUEST_BYTES:,} bytes" in response.text


def test_the_server_still_answers_after_refused_uploads(served):
    _, url = served
    assert Client(url, verbose=False).predict("Qin", "gru", 1, api_name="/predict") == \
        pytest.approx(service.predict(app.MODELS, "Qin", "gru", 1))


def test_sweep_cache_deletes_old_files_and_empty_folders(tmp_path):
    old_dir = tmp_path / "abc123" / "nested"
    old_dir.mkdir(parents=True)
    (old_dir / "upload.csv").write_text("Nguyen\n")
    (tmp_path / "tmpEmpty").write_bytes(b"")  # an old empty temp file, as gr.File leaves them
    for path in (old_dir / "upload.csv", tmp_path / "tmpEmpty"):
        os.utime(path, (time.time() - 100, time.time() - 100))
    (tmp_path / "fresh.csv").write_text("Qin\n")
    assert server.sweep_cache(tmp_path, max_age=50) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fresh.csv"]  # the emptied folders went too


def test_the_allocator_is_bounded_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert server.bound_the_allocator() is True


# ---------------------------------------------------------------------------------------------------------------
# Issue 18: what a hostile client could make the live server hold (disk, files per request, slow connections,
# temp files). A second app, with its own upload folder and lowered limits, so that sizes measured are its own.

SPACE_BYTES = 20 * 2**20  # the upload space of the guarded app (production: server.MAX_UPLOAD_DISK_BYTES)
BODY_SECONDS = 1.0  # its body deadline (production: server.BODY_SECONDS)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """(url, upload folder, its UploadSpace, its UploadRate) of an app launched with a private GRADIO_TEMP_DIR."""
    folder = tmp_path_factory.mktemp("gradio-uploads")
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)  # read by Blocks() and by launch()'s App
    try:
        demo = app.build_demo()
        space, rate = server.UploadSpace(SPACE_BYTES, prune_seconds=0.2), server.UploadRate(per_minute=6, burst=3)
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True,
                                **app.launch_kwargs(space=space, rate=rate, body_seconds=BODY_SECONDS))
    finally:
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before
    assert demo.GRADIO_CACHE == str(folder)
    yield url.rstrip("/"), folder, space, rate
    demo.close()


def on_disk(folder) -> tuple[int, int, int]:
    """(bytes of the files under ``folder``, bytes allocated to them and to its folders, number of files). Each
    inode counts once: a walk can meet a file twice while gradio renames it from its temp name into place."""
    size = allocated = count = 0
    seen = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # renamed or deleted meanwhile
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            allocated += st.st_blocks * 512
            if name in files:
                size, count = size + st.st_size, count + 1
    return size, allocated, count


def post_upload(url, body: bytes, kind: str, client: str | None = None, **kwargs) -> httpx.Response:
    headers = {"content-type": kind} | ({"x-forwarded-for": client} if client else {})  # uvicorn trusts 127.0.0.1
    return httpx.post(url + "/gradio_api/upload", content=body, headers=headers, timeout=30, **kwargs)


@pytest.mark.slow
def test_uploads_never_hold_more_than_the_upload_space(guarded):
    """The attack: thousands of one-file uploads from many addresses at once. 60 MB offered from 4 threads (each
    request from its own address, so the rate limit does not bite) into a 20 MB space: the folder never holds more
    than 20 MB, the rest get 413 with the reason and store nothing, and space comes back as files are deleted."""
    import threading

    url, folder, space, _ = guarded
    server.sweep_cache(folder, max_age=-1)  # what earlier tests stored
    space.prune()
    assert on_disk(folder)[2] == 0 and space.used == 0
    size = service.MAX_UPLOAD_BYTES - 1000
    bodies = [_multipart([(f"flood{i}.txt", f"{i:08d}\n".encode() * (size // 9))]) for i in range(60)]
    answers, peak, done = [], [0, 0], threading.Event()

    def sample():
        while not done.is_set():
            apparent, allocated, _ = on_disk(folder)
            peak[:] = max(peak[0], apparent), max(peak[1], allocated)

    def flood(k):
        for i in range(k, len(bodies), 4):
            body, kind = bodies[i]
            response = post_upload(url, body, kind, client=f"198.51.100.{i}")
            answers.append((response.status_code, response.text))

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=flood, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    done.set()
    sampler.join()
    apparent, allocated, files = on_disk(folder)
    accepted = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] != 200]
    assert len(answers) == 60
    assert max(peak[0], apparent) <= SPACE_BYTES and max(peak[1], allocated) <= SPACE_BYTES
    assert len(accepted) == files == SPACE_BYTES // space.charge(len(bodies[0][0]))  # all the space, no more
    assert refused and all(a == (413, server.UploadLimit.FULL) for a in refused)
    assert space.used <= SPACE_BYTES
    body, kind = _multipart([("late.txt", b"Nguyen\n" * (size // 7))])
    assert post_upload(url, body, kind, client="198.51.100.200").status_code == 413  # still full
    server.sweep_cache(folder, max_age=-1)  # the cleanup deletes the files: their space is free again
    time.sleep(space.prune_seconds)  # (it looks for deleted files at most this often)
    assert post_upload(url, body, kind, client="198.51.100.200").status_code == 200
    assert on_disk(folder)[2] == 1


def test_a_client_over_its_upload_rate_gets_429(guarded):
    """One address sending upload after upload: past its burst (3 here) it gets 429 with Retry-After and nothing
    is stored; another address is not held back."""
    url, folder, _, rate = guarded
    body, kind = _multipart([("names.txt", b"Nguyen\nQin\n")])
    codes = [post_upload(url, body, kind, client="203.0.113.7").status_code for _ in range(rate.burst)]
    assert codes == [200] * rate.burst
    stored = on_disk(folder)[2]
    for _ in range(3):
        response = post_upload(url, body, kind, client="203.0.113.7")
        assert response.status_code == 429 and "too many uploads from your address" in response.text
        assert 1 <= int(response.headers["retry-after"]) <= 60 / rate.per_minute + 1
    assert on_disk(folder)[2] == stored
    assert post_upload(url, body, kind, client="203.0.113.8").status_code == 200


def test_an_ambiguous_boundary_stores_nothing(guarded):
    """The attack: ``boundary=ZZZ; boundary=AAA`` with 1,000 parts under AAA — the file count read under ZZZ was 0,
    gradio's parser read AAA and stored 1,000 files. Now: 400, nothing stored."""
    url, folder, _, _ = guarded
    stored = on_disk(folder)[2]
    parts = b"".join(b'--AAA\r\nContent-Disposition: form-data; name="files"; filename="f%d.txt"\r\n'
                     b"Content-Type: text/plain\r\n\r\nNguyen %d\r\n" % (i, i) for i in range(1000)) + b"--AAA--\r\n"
    response = post_upload(url, parts, "multipart/form-data; boundary=ZZZ; boundary=AAA", client="192.0.2.1")
    assert response.status_code == 400 and "more than one boundary" in response.text
    assert on_disk(folder)[2] == stored


@pytest.mark.slow
@pytest.mark.parametrize("kind, why", [
    ("multipart/form-data; boundary=AAA; Boundary=ZZZ", "more than one boundary"),
    ("multipart/form-data; boundary=", "cannot be read"),
    ('multipart/form-data; boundary=""', "not valid"),
    ("multipart/form-data; boundary=" + "a" * 71, "not valid"),
    ('multipart/form-data; boundary="AAA "', "not valid"),
    ('multipart/form-data; boundary="A;A"', "not valid"),
    ("multipart/form-data", "not valid"),
    ("multipart/form-data; boundary=AAA;", "cannot be read"),
    ("multipart/form-data; boundary=AAA, boundary=ZZZ", "cannot be read"),
    ("text/plain; boundary=AAA", "must be sent as multipart/form-data"),
    ("application/x-www-form-urlencoded", "must be sent as multipart/form-data"),
])
def test_unclear_upload_content_types_are_refused(guarded, kind, why):
    url, folder, _, _ = guarded
    stored = on_disk(folder)[2]
    body = (b'--AAA\r\nContent-Disposition: form-data; name="files"; filename="f.txt"\r\n\r\nQin\r\n--AAA--\r\n')
    response = post_upload(url, body, kind, client=f"192.0.2.{100 + len(kind)}")  # a bucket of its own
    assert response.status_code == 400 and why in response.text, response.text
    assert on_disk(folder)[2] == stored


def test_two_content_type_headers_are_refused(guarded):
    url, folder, _, _ = guarded
    stored = on_disk(folder)[2]
    body, kind = _multipart([("names.txt", b"Qin\n")])
    response = httpx.post(url + "/gradio_api/upload", content=body, timeout=30,
                          headers=[("content-type", kind), ("content-type", "multipart/form-data; boundary=AAA"),
                                   ("x-forwarded-for", "192.0.2.3")])
    assert response.status_code == 400 and "exactly one Content-Type" in response.text
    assert on_disk(folder)[2] == stored


def test_quoted_and_browser_boundaries_still_upload(guarded):
    url, _, _, _ = guarded
    for i, boundary in enumerate(["----WebKitFormBoundary7MA4YWxkTrZu0gW", "it's (a) +_,-./:=? boundary"]):
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="q{i}.txt"\r\n\r\n'
                f"Qin\r\n--{boundary}--\r\n").encode()
        response = post_upload(url, body, f'multipart/form-data; boundary="{boundary}"', client=f"192.0.2.{10 + i}")
        assert response.status_code == 200 and len(response.json()) == 1


def _slow_client(url, head: bytes, trickle: bytes, every: float = 0.2, limit: float = 8.0):
    """Open a connection, send ``head``, then one byte of ``trickle`` every ``every`` s until the server answers
    or closes; returns (seconds until it closed the connection, what it sent)."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=limit)
    sock.setblocking(False)
    start, received, closed = time.monotonic(), b"", None
    try:
        sock.sendall(head)
        sent = 0
        while time.monotonic() - start < limit:
            time.sleep(every)
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = time.monotonic() - start
                    break
                received += chunk
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed = time.monotonic() - start
                break
            try:
                if sent < len(trickle):
                    sock.send(trickle[sent:sent + 1])
                    sent += 1
            except (BrokenPipeError, ConnectionResetError):
                pass
    finally:
        sock.close()
    return closed, received


@pytest.mark.slow
def test_a_slow_upload_body_is_ended_at_the_body_deadline(guarded):
    """The attack: connections that send headers, then their body a byte at a time, stayed open for good. Now the
    server answers 408 and closes the connection at the deadline (1 s here, 60 s in production)."""
    url, folder, _, _ = guarded
    stored = on_disk(folder)[2]
    body, kind = _multipart([("slow.txt", b"Nguyen\n" * 200)])
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nX-Forwarded-For: 192.0.2.20\r\n\r\n").encode()
    closed, answer = _slow_client(url, head, body)
    assert closed is not None and closed < BODY_SECONDS + 2, (closed, answer)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert on_disk(folder)[2] == stored


@pytest.mark.slow
def test_a_slow_body_to_any_route_is_ended(guarded):
    url, _, _, _ = guarded
    body = b'{"data": ["Nguyen", "gru", 3], "fn_index": 0, "session_hash": "slowslow"}'
    head = (f"POST /gradio_api/queue/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    closed, answer = _slow_client(url, head, body)
    assert closed is not None and closed < BODY_SECONDS + 2 and answer.startswith(b"HTTP/1.1 408"), (closed, answer)


@pytest.mark.slow
def test_slow_headers_are_ended_at_the_header_deadline(guarded, monkeypatch):
    """Headers a byte at a time (or none at all): closed at the header deadline (1 s here, 10 s in production),
    with a 408 when part of a request came."""
    monkeypatch.setattr(server, "HEADER_SECONDS", 1.0)  # read as each connection opens
    url, _, _, _ = guarded
    closed, answer = _slow_client(url, b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 100)
    assert closed is not None and closed < 3, closed
    assert answer.startswith(b"HTTP/1.1 408")
    closed, answer = _slow_client(url, b"", b"")  # connects and sends nothing
    assert closed is not None and closed < 3 and answer == b""


@pytest.mark.slow
def test_a_body_trickled_after_an_early_refusal_is_ended(guarded, monkeypatch):
    """A request refused on its headers (413: too large) whose client goes on trickling the body uvicorn drains:
    the connection is closed BODY_SECONDS + 2 s after the headers."""
    monkeypatch.setattr(server, "BODY_SECONDS", 1.0)
    url, _, _, _ = guarded
    _, kind = _multipart([("x.txt", b"")])
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {server.MAX_REQUEST_BYTES + 1}\r\nX-Forwarded-For: 192.0.2.21\r\n\r\n").encode()
    closed, answer = _slow_client(url, head, b"A" * 1000)
    assert answer.startswith(b"HTTP/1.1 413")
    assert closed is not None and closed < 1.0 + 2 + 1.5, closed


def test_the_header_deadline_is_installed():
    from uvicorn import config

    assert server.bound_slow_connections() is True  # gradio installs uvicorn without httptools: "auto" is h11
    assert config.HTTP_PROTOCOLS["auto"] == "namecls.ui.server:DeadlineH11Protocol"


def test_upload_space_reservations_never_overshoot_under_threads(tmp_path):
    import threading

    space = server.UploadSpace(100 * 4096, prune_seconds=0)
    granted, barrier = [], threading.Barrier(16)

    def grab():
        barrier.wait()
        for _ in range(50):
            if space.reserve(4096):
                granted.append(1)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100 and space.used == 100 * 4096
    stored = tmp_path / "upload.txt"
    stored.write_text("Qin\n")
    space.release(99 * 4096)
    space.keep(4096, [str(stored)])  # the last request stored one file: its bytes stay while the file exists
    assert space.used == 4096 and not space.reserve(100 * 4096)
    stored.unlink()
    assert space.reserve(100 * 4096)  # the file is gone: its bytes came back


def test_an_upload_of_unknown_outcome_keeps_its_space_for_a_cache_lifetime(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: clock[0])
    space = server.UploadSpace(10 * 4096, unclaimed_seconds=900)
    assert space.reserve(8 * 4096)
    space.keep(8 * 4096, None)  # gradio refused it: its temp file may be on disk until the cleanup
    assert not space.reserve(4 * 4096)
    clock[0] += 901
    assert space.reserve(4 * 4096) and space.used == 4 * 4096


def test_upload_rate_refills_and_forgets_the_oldest_clients():
    rate = server.UploadRate(per_minute=60, burst=2, max_clients=3)
    assert [rate.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert rate.take("a", now=1.0) == 0.0  # one a second
    for client in "bcd":
        rate.take(client, now=1.0)
    assert len(rate) == 3  # "a" went first


def test_client_key_groups_an_ipv6_host_by_its_64():
    key = lambda host: server.client_key({"client": (host, 1)})  # noqa: E731
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64" != key("2001:db8:1:3::1")
    assert key("::ffff:192.0.2.1") == key("192.0.2.1") == "192.0.2.1"
    assert server.client_key({"client": None}) == "unknown"


def test_sweep_temp_ages_csv_exports_and_model_zips(tmp_path, monkeypatch):
    """The Batch tab's exports (service.write_csv) and the Train tab's zips (a namecls-yours-* folder) in the
    system temp folder go at the cache's age; newer ones, the live export folder and other folders stay."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # tempfile.gettempdir(): where both are written
    monkeypatch.setattr(service, "_EXPORT_DIR", None)
    import pandas as pd

    old_csv = service.write_csv(pd.DataFrame({"name": ["Qin"]}), "namecls-gru")
    new_csv = service.write_csv(pd.DataFrame({"name": ["Li"]}), "namecls-rnn")
    dead = tmp_path / "namecls-export-deadproc"  # a stopped process's folder
    dead.mkdir()
    (dead / "namecls-gru-0000.csv").write_text("name\n")
    old_zip = Path(tempfile.mkdtemp(prefix="namecls-yours-")) / "namecls-gru-yours.zip"
    old_zip.write_bytes(b"PK")
    new_zip = Path(tempfile.mkdtemp(prefix="namecls-yours-")) / "namecls-rnn-yours.zip"
    new_zip.write_bytes(b"PK")
    other = tmp_path / "someone-else"
    other.mkdir()
    (other / "keep.csv").write_text("x\n")
    past = time.time() - server.CACHE_SECONDS - 60
    for path in (old_csv, dead / "namecls-gru-0000.csv", dead, old_zip, old_zip.parent, other / "keep.csv", other):
        os.utime(path, (past, past))
    assert server.sweep_temp() == 3
    assert not os.path.exists(old_csv) and os.path.exists(new_csv)
    assert not dead.exists() and not old_zip.parent.exists() and new_zip.exists() and (other / "keep.csv").exists()
    os.remove(new_csv)
    os.utime(Path(new_csv).parent, (past, past))
    server.sweep_temp()
    assert Path(new_csv).parent.is_dir()  # write_csv's live folder stays, even empty


def _batch_event_join(url: str, demo_fns, file: dict, session: str) -> httpx.Response:
    """Call the Batch tab's event (private: no API name, but the page calls it by its index) as the page does."""
    index = next(i for i, fn in demo_fns.items() if fn.api_name == "ui_batch")
    payload = {"data": [file, "", "gru", "lists"], "fn_index": index, "session_hash": session, "event_data": None,
               "trigger_id": None}
    return httpx.post(url + "/gradio_api/queue/join", content=json.dumps(payload).replace("FileData", "\\u0046ileData")
                      if session.endswith("escaped") else json.dumps(payload),
                      headers={"content-type": "application/json"}, timeout=30)


@pytest.mark.parametrize("session", ["remote-url", "remote-url-escaped"])
def test_a_file_given_as_a_url_is_not_fetched(served, monkeypatch, session):
    """The attack around the upload space: the Batch tab's file input given {"path": "https://…/10GB.csv"}; gradio
    fetched any public URL into its cache, whole, before the event ran. Now: 400, and nothing is fetched."""
    import gradio.processing_utils

    demo, url = served
    fetched = []

    async def fetch(address, cache_dir):  # gradio's SSRF-protected download, recorded (the tests are offline)
        fetched.append(address)
        raise RuntimeError("offline")

    monkeypatch.setattr(gradio.processing_utils, "async_ssrf_protected_download", fetch)
    remote = {"path": "https://example.com/10GB.csv", "orig_name": "10GB.csv", "meta": {"_type": "gradio.FileData"}}
    response = _batch_event_join(url.rstrip("/"), demo.fns, remote, session)
    assert response.status_code == 400 and response.text == server.NoRemoteFiles.REASON
    assert fetched == []


@pytest.mark.slow
def test_an_uploaded_file_still_reaches_the_batch_event(served):
    demo, url = served
    body, kind = _multipart([("names.txt", b"Nguyen\nQin\n")])
    (path,) = httpx.post(url.rstrip("/") + "/gradio_api/upload", content=body, headers={"content-type": kind}).json()
    local = {"path": path, "orig_name": "names.txt", "meta": {"_type": "gradio.FileData"},
             "url": url.rstrip("/") + "/gradio_api/file=" + path}  # the page sends its own server's URL: fine
    response = _batch_event_join(url.rstrip("/"), demo.fns, local, "local-file")
    assert response.status_code == 200, response.text
    completed = None
    with httpx.stream("GET", url.rstrip("/") + "/gradio_api/queue/data?session_hash=local-file", timeout=60) as s:
        for line in s.iter_lines():
            if "process_completed" in line:
                completed = line
                break
    assert completed and '"success":true' in completed.replace(" ", "") and "**2** names" in completed
    # Its CSV is written into gradio's cache (served from there, not copied: on disk once) and counted.
    message = json.loads(completed.split("data:", 1)[1])
    download = next(v for v in message["output"]["data"] if isinstance(v, dict) and v.get("label") == "Download CSV")
    csv = Path(download["value"]["path"])
    assert csv.parent.parent == Path(demo.GRADIO_CACHE) and csv.parent.name.startswith("namecls-out-")
    assert list(Path(demo.GRADIO_CACHE).rglob(csv.name)) == [csv]
    assert str(csv.parent) in server.OUTPUT_SPACE._files


def test_the_private_session_store_is_read_only_on_the_tested_gradio(served, monkeypatch):
    """server._state_holder reads gradio's Blocks.state_holder only on the gradio it was written against: this fails
    when gradio is upgraded (then check the store and update TESTED_GRADIO); on another version it warns and drops
    nothing rather than guess."""
    import gradio

    from namecls.ui import mcp_json

    demo, _ = served
    assert gradio.__version__ == mcp_json.TESTED_GRADIO
    assert server._state_holder(demo) is demo.state_holder
    monkeypatch.setattr(gradio, "__version__", "99.0.0")
    with pytest.warns(RuntimeWarning, match="not dropped"):
        assert server.drop_stored_outputs(demo) == 0
