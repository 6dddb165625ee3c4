"""The server stays bounded: public API calls leave no result behind in gradio's per-session state, upload
requests are capped in files and bytes, and the cache and session limits are the ones written down.

Runs the real app in-process and calls it with gradio_client and raw HTTP (``namecls/ui/server.py`` holds the
settings and their worst cases; ``bench/soak.py`` measures memory and disk under load).
"""

import os
import time

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import httpx  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402

import app  # noqa: E402
from namecls import service  # noqa: E402
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


def test_the_limits_are_the_ones_written_down(served):
    demo, _ = served
    assert demo.delete_cache == server.DELETE_CACHE == (server.CACHE_SECONDS, server.CACHE_SECONDS)
    assert demo.state_holder.capacity == server.SESSION_CAPACITY
    assert server.MAX_REQUEST_BYTES > service.MAX_UPLOAD_BYTES  # one full-size file still fits


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
