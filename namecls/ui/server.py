"""What keeps the server bounded: per-session memory, the disk cache, and the size of an upload request.

Every setting has a cap and a lifetime, and its worst case is written beside it. Measured on this app (2 cores,
gradio 6.31): a fresh session costs ~0.21 MB (gradio's per-session copy of the page's config); a traced name in
Step through (the session's ``StepView``: a trace of ≤ 64 letters and its trajectory PNG) ≤ 0.3 MB; one
``/predict_batch`` result of 10,000 names ~7.8 MB, which gradio would otherwise keep per session until the session
is evicted (``bench/soak.py`` measures all of it).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

from .. import service

# Sessions gradio keeps (the least recently used dropped first: a visitor still clicking keeps theirs). Every
# script call opens one, so the cap is what stops their number growing. Worst case 200 × (0.21 MB + 0.3 MB of
# Step-through state) ≈ 100 MB.
SESSION_CAPACITY = 200
# Lifetime of a session's Step-through state (a gr.State); an idle session's state goes after it.
STATE_SECONDS = 1800
# How often every session's copy of its last output values (a 10,000-row table, a map) is dropped. Those copies only
# serve gradio's deep links, which this app does not use. Worst case between two sweeps: the events that finish
# in that time (the queue runs at most 4 at once, a 10,000-name batch takes ≥ 1 s) × 7.8 MB ≈ 4 × 2 × 7.8 ≈ 65 MB.
SWEEP_SECONDS = 2.0
# gradio's cache of uploads and returned files: files older than CACHE_SECONDS go, every CACHE_SECONDS / 2, by
# gradio's own cleanup (Blocks(delete_cache=...)) and by ours (sweep_cache: gradio 6.31's cleanup can die for good
# under load with "Set changed size during iteration", and leaves the empty temp files of gr.File uploads and empty
# folders). Worst case on disk: what arrives in 1.5 × CACHE_SECONDS, each upload request ≤ MAX_REQUEST_BYTES.
# The Batch tab's CSV exports (service.write_csv, outside gradio's cache) keep the same age.
# NAMECLS_CACHE_SECONDS replaces the 600 s, e.g. 20 for bench/soak.py.
CACHE_SECONDS = int(os.environ.get("NAMECLS_CACHE_SECONDS") or 600)
DELETE_CACHE = (CACHE_SECONDS, CACHE_SECONDS)
# Large allocations (≥ 128 KB: tables, figures, batch results) are served by mmap, so freeing them returns the
# memory to the system; glibc's default raises that threshold as it sees large blocks freed, and the server's RSS
# then climbed ~1 GB over 200 batch sessions while Python held 12 MB more (bench/README.md, "Soak").
MMAP_THRESHOLD_BYTES = 128 * 1024
# One upload request: at most this many files and bytes (gradio's own cap is per file, up to 1,000 files a request).
MAX_FILES_PER_REQUEST = 1
MAX_REQUEST_BYTES = service.MAX_UPLOAD_BYTES + 64 * 1024  # one file plus its multipart headers


def drop_stored_outputs(demo) -> int:
    """Forget every session's stored copy of its last output values; returns how many were dropped.

    gradio keeps, per session, the last value of every output (``SessionState.config_values``) — for the public
    API too, so each script that calls ``/predict_batch`` once would hold its 7.8 MB result until its session is
    evicted. Inputs always come with the request and gr.State lives elsewhere (``state_data``), so nothing the app
    reads is lost.
    """
    holder = getattr(demo, "state_holder", None)
    if holder is None:
        return 0
    with holder.lock:
        sessions = list(holder.session_data.values())
    dropped = 0
    for session in sessions:
        for config in list(session.config_values.values()):
            props = config.get("props") if isinstance(config, dict) else None
            if props and props.get("value") is not None:
                props["value"] = None
                dropped += 1
    return dropped


def sweep_cache(folder, max_age: float = CACHE_SECONDS) -> int:
    """Delete the files under ``folder`` older than ``max_age`` seconds, then its empty folders; returns how many
    files went. Files that vanish meanwhile (gradio's own cleanup) are skipped."""
    now, removed = time.time(), 0
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            try:
                if now - os.stat(path).st_mtime > max_age:
                    os.remove(path)
                    removed += 1
            except OSError:
                pass
        if root != str(folder):
            try:
                os.rmdir(root)  # only if empty
            except OSError:
                pass
    return removed


def bound_the_allocator() -> bool:
    """On glibc, fix the mmap threshold at :data:`MMAP_THRESHOLD_BYTES` (and so stop it from growing); returns
    whether it could. Elsewhere a no-op."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES))


def _release_free_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def start_sweeper(demo, seconds: float = SWEEP_SECONDS) -> threading.Thread:
    """A daemon thread that, for the life of the process, runs :func:`drop_stored_outputs` every ``seconds`` (and
    returns the freed heap to the system when it dropped something) and, every ``CACHE_SECONDS / 2``,
    :func:`sweep_cache` on gradio's cache."""
    def sweep():
        last_cache = time.monotonic()
        while True:
            time.sleep(seconds)
            if drop_stored_outputs(demo):
                _release_free_memory()  # what the dropped values held goes back to the system now
            if time.monotonic() - last_cache >= CACHE_SECONDS / 2:
                last_cache = time.monotonic()
                sweep_cache(demo.GRADIO_CACHE, CACHE_SECONDS)

    thread = threading.Thread(target=sweep, name="namecls-sweeper", daemon=True)
    thread.start()
    return thread


class UploadLimit:
    """ASGI middleware: an upload request (``POST …/upload``) with more than ``max_files`` files or ``max_bytes``
    bytes is refused with 413 and a one-line reason, before gradio reads or stores any of it."""

    def __init__(self, app, max_files: int = MAX_FILES_PER_REQUEST, max_bytes: int = MAX_REQUEST_BYTES):
        self.app, self.max_files, self.max_bytes = app, max_files, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _refuse(send, f"an upload request may hold at most {self.max_bytes:,} bytes")
        boundary = _boundary(headers.get(b"content-type", b""))
        seen, parts, tail = 0, 0, b""
        body = []
        while True:  # read the whole (small, capped) body, counting bytes and file parts as they arrive
            message = await receive()
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return await _refuse(send, f"an upload request may hold at most {self.max_bytes:,} bytes")
            if boundary:
                window = tail + chunk
                parts += window.count(b"--" + boundary) - tail.count(b"--" + boundary)
                tail = window[-(len(boundary) + 2):]
            body.append(chunk)
            if not message.get("more_body"):
                break
        if boundary and parts - 1 > self.max_files:  # n parts have n + 1 boundary lines
            return await _refuse(send, f"an upload request may hold at most {self.max_files} file(s)")
        replay = iter([{"type": "http.request", "body": b"".join(body), "more_body": False}])

        async def receive_again():
            return next(replay, {"type": "http.disconnect"})

        return await self.app(scope, receive_again, send)


def _boundary(content_type: bytes) -> bytes:
    for piece in content_type.split(b";"):
        key, _, value = piece.strip().partition(b"=")
        if key.lower() == b"boundary":
            return value.strip(b'"')
    return b""


async def _refuse(send, reason: str) -> None:
    body = reason.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
