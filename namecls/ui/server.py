"""What keeps the server bounded: per-session memory, the cache and temp files, uploads, downloads, slow connections.

Every setting has a cap and a lifetime, and its worst case is written beside it. Measured on this app (2 cores,
gradio 6.31): a fresh session costs ~0.21 MB (gradio's per-session copy of the page's config); a traced name in
Step through (the session's ``StepView``: a trace of ≤ 64 letters and its trajectory PNG) ≤ 0.3 MB; one
``/predict_batch`` result of 10,000 names ~7.8 MB, which gradio would otherwise keep per session until the session
is evicted (``bench/soak.py`` measures all of it).

What a client can make the server hold, and for how long (issue 18):

- on disk, uploads: at most :data:`MAX_UPLOAD_DISK_BYTES` for the whole process (:class:`UploadSpace`: each upload
  request reserves its bytes before it is read on, atomically; the reservation stays on the files gradio stored until
  a cleanup deletes them), and each client at most :data:`UPLOAD_BURST` upload requests at once and
  :data:`UPLOADS_PER_MINUTE` a minute after that (:class:`UploadRate`); past either a 413 or a 429 and nothing stored;
- an upload request: one file (:data:`MAX_FILES_PER_REQUEST`) and :data:`MAX_REQUEST_BYTES`, under exactly one
  ``multipart/form-data`` boundary that is valid by RFC 2046 and that gradio's parser reads the same (else 400);
- on disk, files given by URL: none (:class:`NoRemoteFiles`: gradio would fetch them into its cache, uncapped);
- a connection: its request line and headers within :data:`HEADER_SECONDS`, its body within :data:`BODY_SECONDS`
  (:class:`BodyDeadline` answers 408; :class:`DeadlineH11Protocol` closes what is still waiting after that);
- on disk, the files it writes for download (the Batch tab's CSV exports, the Train tab's model zips): at most
  :data:`MAX_OUTPUT_DISK_BYTES` for the whole process (:class:`OutputSpace`: each file's bytes are reserved before it
  is written, atomically, and stay reserved until the cache's cleanup has deleted it), and each client at most
  :data:`EXPORTS_PER_MINUTE` CSV exports a minute (:data:`EXPORT_RATE`); past either the tab still answers (the
  table, the trained model) and its download button says why there is no file; nothing is written.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Mapping
from pathlib import Path

import h11
from python_multipart.multipart import parse_options_header
from starlette.middleware import Middleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..serving import service

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
# folders). A file lives ≤ 1.5 × CACHE_SECONDS = 900 s. gradio 6.31 copies a file an event returns (a gr.File or
# gr.DownloadButton value) once, into its cache (GRADIO_CACHE/<sha256 of the content>/<name>, processing_utils.
# save_file_to_cache), unless the file is already inside its cache: then it serves it where it is. So the Batch tab's
# CSV exports and the Train tab's model zips are written straight into gradio's cache (write_export, write_zip; each
# in a folder of its own with an unguessable name, as gradio's are) and are on disk once. (They used to be written to
# the system temp folder, then copied: twice on disk. bench/disk.py counted three copies: the third was its own
# gradio_client's download, into the same GRADIO_TEMP_DIR.)
# Worst case on disk (bench/disk.py measures each):
#   uploads      ≤ MAX_UPLOAD_DISK_BYTES = 200 MB, a hard cap (below), the temp files of refused uploads included;
#   downloads    ≤ MAX_OUTPUT_DISK_BYTES = 300 MB, a hard cap (below): CSV exports and model zips together, what is
#                being written included (uncapped, two copies each, they were: exports of 10,000 names, ≤ 8.6 MB
#                each, ~4.7 GB in 900 s from 4 scripted clients; zips, one training after another, ≤ 2.5 MB each,
#                ~1.2 GB in 900 s);
#   the rest     the figures and other files gradio returns (a few 100 KB per event).
# NAMECLS_CACHE_SECONDS replaces the 600 s, e.g. 20 for bench/soak.py.
CACHE_SECONDS = int(os.environ.get("NAMECLS_CACHE_SECONDS") or 600)
# Names (in tempfile.gettempdir()) of the temp folders that sweep_temp ages like the cache: where CSV exports
# (service.write_csv) and model zips were written before they went into gradio's cache, left by older processes.
TEMP_PREFIXES = ("namecls-export-", "namecls-yours-")
DELETE_CACHE = (CACHE_SECONDS, CACHE_SECONDS)
# Large allocations (≥ 128 KB: tables, figures, batch results) are served by mmap, so freeing them returns the
# memory to the system; glibc's default raises that threshold as it sees large blocks freed, and the server's RSS
# then climbed ~1 GB over 200 batch sessions while Python held 12 MB more (bench/README.md, "Soak").
MMAP_THRESHOLD_BYTES = 128 * 1024
# One upload request: at most this many files and bytes (gradio's own cap is per file, up to 1,000 files a request).
MAX_FILES_PER_REQUEST = 1
MAX_REQUEST_BYTES = service.MAX_UPLOAD_BYTES + 64 * 1024  # one file plus its multipart headers
# Bytes all uploads may hold on disk at once, for the whole process (UploadSpace). An upload request reserves, before
# its body is read, its declared length (MAX_REQUEST_BYTES when it declares none) rounded up to 4 KiB blocks plus
# 8 KiB (the file's inode and its folder), and gives back what it did not use once read; the files gradio stored keep
# their reservation until a cleanup deletes them (≤ 1.5 × CACHE_SECONDS), a request gradio refused keeps it for that
# long (a refusal can leave its temp file behind). Past the cap: 413 "the server's upload space is full, try again
# in a few minutes", nothing read or stored. Worst case on disk: 200 MB of uploads (+ their empty folders, 4 KiB
# each, until the next sweep); in memory: the same 200 MB, as the bodies being read are held whole (each
# ≤ MAX_REQUEST_BYTES, ≤ BODY_SECONDS). Under a flood from many addresses, every upload is refused until files age
# out (≤ 15 min); pasted names and the API still work. NAMECLS_UPLOAD_SPACE_MB replaces the 200.
MAX_UPLOAD_DISK_BYTES = int(float(os.environ.get("NAMECLS_UPLOAD_SPACE_MB") or 200) * 2**20)
# Upload requests per client (its address; an IPv6 address by its /64): a token bucket of UPLOAD_BURST requests that
# refills at UPLOADS_PER_MINUTE. Past it: 429 with Retry-After, nothing read or stored. One client's worst case:
# 30 + 30 a minute ≤ 1 MB each, so 30 MB in its first minute and 1 MB every 2 s after. Buckets kept: MAX_RATE_CLIENTS,
# the least recently seen forgotten first (~150 B each: ≤ 1.5 MB). Behind a proxy every visitor has the proxy's
# address (one bucket for all) unless uvicorn is told to trust its X-Forwarded-For: FORWARDED_ALLOW_IPS=<proxy ip>
# (uvicorn trusts 127.0.0.1 and ::1 by default). NAMECLS_UPLOADS_PER_MINUTE replaces the 30 (bench/soak.py: raise it).
UPLOADS_PER_MINUTE = float(os.environ.get("NAMECLS_UPLOADS_PER_MINUTE") or 30)
UPLOAD_BURST = max(1, int(UPLOADS_PER_MINUTE))
MAX_RATE_CLIENTS = 10_000
# A request's body must have arrived whole BODY_SECONDS after its headers (BodyDeadline: 408 and the connection
# closed): the largest upload then needs ≥ 17 KB/s. A request's line and headers must have arrived HEADER_SECONDS after
# its connection opened or its previous response ended (DeadlineH11Protocol: closed, with a 408 if it sent a part).
# gradio 6.31 starts uvicorn with only host, port, log level and TLS files (http_server.start_server), so uvicorn's
# own limits are its defaults: timeout_keep_alive 5 s (an idle connection after a response), h11's 16 KiB for a
# request's line and headers, no cap on connections (limit_concurrency None: the process's open-file limit is the
# cap) and no header or body timeout at all; launch() and app_kwargs reach none of these. Worst case of slow
# connections: each holds a socket and ≤ 16 KiB for ≤ HEADER_SECONDS, then ≤ 64 KiB (uvicorn's read buffer), or an
# upload ≤ MAX_REQUEST_BYTES (inside the upload space), for ≤ BODY_SECONDS (+ 2 s); how many at once is bounded
# only by how fast clients open them times those ≤ 72 s, and by the open-file limit (20,000 here; past it uvicorn
# pauses accepting). NAMECLS_BODY_SECONDS / NAMECLS_HEADER_SECONDS replace the 60 s / 10 s.
BODY_SECONDS = float(os.environ.get("NAMECLS_BODY_SECONDS") or 60)
HEADER_SECONDS = float(os.environ.get("NAMECLS_HEADER_SECONDS") or 10)
# Bytes the files written for download (the Batch tab's CSV exports, the Train tab's model zips) may hold on disk at
# once, for the whole process (OutputSpace, OUTPUT_SPACE). A file reserves its bytes before anything is written,
# atomically (rounded up to 4 KiB blocks, plus 8 KiB: its inode and its folder; a CSV its exact size, encoded in
# memory first; a zip ZIP_RESERVE_BYTES while it is written, then its own size), and keeps them until its folder is
# gone: the cleanups delete it CACHE_SECONDS after it was written, ≤ 1.5 × CACHE_SECONDS = 900 s. Past the cap nothing
# is written and the download button says "the server's export space is full, try again in a few minutes"; the Batch
# tab still shows its table, the Train tab still gives the model to the session. Worst case on disk: 300 MB, what is
# being written included (a CSV is written from memory; a zip's staging is inside its reservation); in memory, beside
# the table it is made from, each CSV being written, for the moment it takes: its text and its bytes (≤ 2 × 8.8 MB,
# ≤ 4 at once: the queue's concurrency, ≤ 70 MB), and one entry per stored file (~200 B; each holds ≥ 12 KiB of the
# cap, so ≤ 26,000 entries, ≤ 5 MB). Under a flood of large
# exports from many addresses (~35 exports of 10,000 names fill it), downloads are refused until files age out
# (≤ 15 min); tables, trainings and the API still work. Not counted: the files of a process that died without
# closing (gradio deletes its own at shutdown), until the cache's cleanup deletes them by age (≤ 900 s).
# NAMECLS_OUTPUT_SPACE_MB replaces the 300.
MAX_OUTPUT_DISK_BYTES = int(float(os.environ.get("NAMECLS_OUTPUT_SPACE_MB") or 300) * 2**20)
# What a model zip reserves while it is written: checkpoint.save_zip stages the checkpoint folder (in the system temp
# folder) and writes the zip beside its final name, then renames it and deletes the folder. The largest the Train tab
# allows (GRU, 256 hidden, 2 layers, all 18 languages) stages 3.2 MB and zips to 2.5 MB: a 5.6 MB peak (measured);
# 8 MiB covers it with its inodes and folders. A zip that still came out larger than its reservation is kept only if
# the rest fits (else deleted, and the button says the space is full).
ZIP_RESERVE_BYTES = 8 * 2**20
# CSV exports per client (request.client.host, an IPv6 address by its /64; behind a proxy see UPLOADS_PER_MINUTE): a
# token bucket of EXPORTS_PER_MINUTE exports that refills at EXPORTS_PER_MINUTE a minute (EXPORT_RATE). The Batch
# event is private but callable by a script as the page calls it; past the rate the table is still answered and the
# download button says when the next export is possible, nothing written. One client's worst case: 20 exports at
# once, then one every 3 s, ≤ 8.6 MB each (≤ 2.9 MB/s after its burst): alone it could fill MAX_OUTPUT_DISK_BYTES
# in about a minute, so the disk is bounded by that cap, the rate bounds what one script makes the server write
# (and it takes a 10,000-name batch ≥ 1 s, 3-14 s here, to make an 8.6 MB export). Buckets kept as for uploads
# (MAX_RATE_CLIENTS, ≤ 1.5 MB). NAMECLS_EXPORTS_PER_MINUTE replaces the 20.
EXPORTS_PER_MINUTE = float(os.environ.get("NAMECLS_EXPORTS_PER_MINUTE") or 20)


def _state_holder(demo):
    """gradio's per-session store (``Blocks.state_holder``: private), or None, with a warning, when the running
    gradio is not the one this was written against (:data:`namecls.ui.mcp_json.TESTED_GRADIO`) or has no such
    store: the one other private touch of gradio, and ``tests/test_server.py`` fails when gradio changes it."""
    import gradio

    from .mcp_json import TESTED_GRADIO

    holder = getattr(demo, "state_holder", None)
    if gradio.__version__ != TESTED_GRADIO or not all(hasattr(holder, a) for a in ("lock", "session_data")):
        warnings.warn(f"namecls: sessions' stored outputs are not dropped: gradio {gradio.__version__} is not "
                      f"{TESTED_GRADIO}, whose Blocks.state_holder namecls/ui/server.py reads", RuntimeWarning,
                      stacklevel=2)
        return None
    return holder


def drop_stored_outputs(demo) -> int:
    """Forget every session's stored copy of its last output values; returns how many were dropped.

    gradio keeps, per session, the last value of every output (``SessionState.config_values``) — for the public
    API too, so each script that calls ``/predict_batch`` once would hold its 7.8 MB result until its session is
    evicted. Inputs always come with the request and gr.State lives elsewhere (``state_data``), so nothing the app
    reads is lost.
    """
    holder = _state_holder(demo)
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


def sweep_temp(folder=None, max_age: float = CACHE_SECONDS, prefixes=TEMP_PREFIXES) -> int:
    """Age the app's own temp folders in ``folder`` (the system temp folder): in each ``namecls-export-*`` (the
    Batch tab's CSVs) the files older than ``max_age`` go, and the folder too once empty unless it is this process's
    live one; each ``namecls-yours-*`` (a trained model's zip) goes whole once nothing in it is newer than
    ``max_age``. Any process's, since a stopped one leaves them. Returns how many files went."""
    folder = tempfile.gettempdir() if folder is None else str(folder)
    live = getattr(service, "_EXPORT_DIR", None)  # service.write_csv's folder: it writes there without re-checking
    live = os.path.realpath(live) if live is not None else None
    now, removed = time.time(), 0
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(tuple(prefixes))]
    except OSError:
        return 0
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                if now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                    os.remove(entry.path)
                    removed += 1
                continue
            if entry.name.startswith("namecls-export-"):
                removed += sweep_cache(entry.path, max_age)
                if os.path.realpath(entry.path) != live:
                    os.rmdir(entry.path)  # only if empty
                continue
            files = [os.path.join(root, name) for root, _, names in os.walk(entry.path) for name in names]
            newest = max([os.stat(entry.path).st_mtime] + [os.stat(f).st_mtime for f in files])
            if now - newest > max_age:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += len(files)
        except OSError:  # gone meanwhile, not empty, or not ours to delete
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
    :func:`sweep_cache` on gradio's cache and :func:`sweep_temp` on the system temp folder, then gives back the
    upload and output space of the files they deleted. One failed sweep does not end the thread."""
    def sweep():
        last_cache = time.monotonic()
        while True:
            time.sleep(seconds)
            if drop_stored_outputs(demo):
                _release_free_memory()  # what the dropped values held goes back to the system now
            if time.monotonic() - last_cache >= CACHE_SECONDS / 2:
                last_cache = time.monotonic()
                for sweep_one in (lambda: sweep_cache(demo.GRADIO_CACHE, CACHE_SECONDS),
                                  lambda: sweep_temp(None, CACHE_SECONDS),
                                  lambda: UPLOAD_SPACE.prune(), lambda: OUTPUT_SPACE.prune()):  # deleted: free
                    try:
                        sweep_one()
                    except Exception:  # noqa: BLE001 - the next sweep tries again; the thread must live on
                        pass

    thread = threading.Thread(target=sweep, name="namecls-sweeper", daemon=True)
    thread.start()
    return thread


class UploadSpace:
    """The bytes uploads hold on disk, against a cap (:data:`MAX_UPLOAD_DISK_BYTES`), for every upload request that
    shares this object (the process's :data:`UPLOAD_SPACE` unless a test passes its own).

    A request :meth:`reserve` s its bytes before it is read on (refused when they do not fit: the check and the
    reservation are one step under a lock, so concurrent requests cannot overshoot), gives back the part it did
    not use with :meth:`shrink`, and ends with :meth:`keep` (the paths gradio stored: their reservation stays until
    the file is gone) or :meth:`release` (nothing stored). When a reservation does not fit, the entries whose files
    are gone (deleted by gradio's cleanup or :func:`sweep_cache`) are dropped first, at most once a ``prune_seconds``.
    """

    BLOCK, OVERHEAD = 4096, 8192

    def __init__(self, capacity: int = MAX_UPLOAD_DISK_BYTES, unclaimed_seconds: float | None = None,
                 prune_seconds: float = 1.0):
        self.capacity = capacity
        self.unclaimed_seconds = (1.5 * CACHE_SECONDS + 2 * SWEEP_SECONDS if unclaimed_seconds is None
                                  else unclaimed_seconds)
        self.prune_seconds = prune_seconds
        self._lock = threading.Lock()
        self._held = 0  # everything below, in bytes
        self._files: dict[str, tuple[int, int]] = {}  # a stored file's path → (its bytes, the entry's number)
        self._unclaimed: deque[tuple[float, int]] = deque()  # (until when, bytes) of requests gradio refused
        self._serial = 0
        self._last_prune = -math.inf

    @classmethod
    def charge(cls, nbytes: int) -> int:
        """What a request of ``nbytes`` can occupy on disk: whole blocks, plus an inode and a folder."""
        return -(-max(0, nbytes) // cls.BLOCK) * cls.BLOCK + cls.OVERHEAD

    @property
    def used(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return self._held

    def reserve(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` if they fit under the cap; returns whether they did."""
        for attempt in (0, 1):
            with self._lock:
                self._expire(time.monotonic())
                if self._held + nbytes <= self.capacity:
                    self._held += nbytes
                    return True
            if attempt or not self.prune(force=False):
                return False
        return False

    def shrink(self, reserved: int, needed: int) -> int:
        """A reservation of ``reserved`` needs only ``needed``: give back the rest; returns what stays reserved."""
        if needed < reserved:
            with self._lock:
                self._held -= reserved - needed
            return needed
        return reserved

    def release(self, reserved: int) -> None:
        with self._lock:
            self._held -= reserved

    def keep(self, reserved: int, paths: list[str] | None) -> None:
        """The request that reserved ``reserved`` is over: it stored ``paths`` (their share of it stays reserved
        while they exist), or nothing (``[]``: all given back), or its outcome is unknown (None: kept for
        ``unclaimed_seconds``, the longest a file in gradio's cache lives)."""
        with self._lock:
            if paths is None:
                self._unclaimed.append((time.monotonic() + self.unclaimed_seconds, reserved))
                return
            self._held -= reserved
            share = -(-reserved // len(paths)) if paths else 0
            for path in paths:
                old = self._files.pop(path, None)  # the same file stored again (same content, same name)
                if old is not None:
                    self._held -= old[0]
                self._serial += 1
                self._files[path] = (share, self._serial)
                self._held += share

    def prune(self, force: bool = True) -> bool:
        """Drop the entries whose files are gone; returns whether that freed anything. Without ``force``, at most
        once a ``prune_seconds`` (the check stats every stored file)."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_prune < self.prune_seconds:
                return False
            self._last_prune = now
            entries = list(self._files.items())
        gone = [(path, entry) for path, entry in entries if not os.path.exists(path)]  # outside the lock
        with self._lock:
            freed = 0
            for path, entry in gone:
                if self._files.get(path) == entry:  # not stored again meanwhile
                    del self._files[path]
                    freed += entry[0]
            self._held -= freed
            return freed > 0

    def _expire(self, now: float) -> None:
        while self._unclaimed and self._unclaimed[0][0] <= now:
            self._held -= self._unclaimed.popleft()[1]


UPLOAD_SPACE = UploadSpace()


class OutputSpace(UploadSpace):
    """The bytes the files written for download hold on disk (the Batch tab's CSVs, the Train tab's zips), against
    a cap (:data:`MAX_OUTPUT_DISK_BYTES`), for everything that shares this object (the process's
    :data:`OUTPUT_SPACE`, looked up at each write: tests put their own there).

    :meth:`store` reserves a file's bytes before anything is written (the check and the reservation are one step
    under a lock, as for uploads, so writers in many threads cannot overshoot), writes it into a fresh folder of its
    own and keeps the reservation on that folder until it is gone (the cleanups delete the file, and
    :func:`sweep_cache` its empty folder, by age); past the cap nothing is written."""

    FULL = "the server's export space is full, try again in a few minutes"

    def __init__(self, capacity: int = MAX_OUTPUT_DISK_BYTES, prune_seconds: float = 1.0):
        super().__init__(capacity, prune_seconds=prune_seconds)

    def store(self, folder, name: str, write, nbytes: int) -> str | None:
        """Write the file ``name`` with ``write(path)``, which may leave at most ``nbytes`` on disk while it runs
        and after, in a new folder (an unguessable name) in ``folder``; returns its path, or None when the space is
        full (then nothing was written). A write that raises leaves nothing behind and frees its space."""
        reserved = self.charge(nbytes)
        if not self.reserve(reserved):
            return None
        home = Path(folder) / f"namecls-out-{secrets.token_hex(16)}"
        path = home / Path(name).name
        try:
            for attempt in range(3):
                try:  # a placeholder at once: a sweep removes empty folders, whatever their age
                    home.mkdir(parents=True, exist_ok=True)
                    path.touch()
                    break
                except FileNotFoundError:  # the folder went meanwhile
                    if attempt == 2:
                        raise
            write(path)
            used = self.charge(sum(f.stat().st_size for f in home.iterdir()))
            if used > reserved:  # larger than its bound said: kept only if the rest fits
                if not self.reserve(used - reserved):
                    raise _NoRoom
                reserved = used
            reserved = self.shrink(reserved, used)
        except BaseException as err:
            self.release(reserved)
            shutil.rmtree(home, ignore_errors=True)
            if isinstance(err, _NoRoom):
                return None
            raise
        self.keep(reserved, [str(home)])
        return str(path)


class _NoRoom(Exception):
    pass


OUTPUT_SPACE = OutputSpace()


def write_export(table, stem: str, folder) -> str | None:
    """The Batch tab's CSV of ``table`` (:func:`namecls.serving.service.csv_bytes`) as ``<stem>-<8 hex>.csv`` in
    ``folder`` (gradio's cache: served from there, not copied), inside :data:`OUTPUT_SPACE`; None when it is full.

    gradio serves a returned file without copying it when it lies in the component's ``GRADIO_CACHE`` (fixed when
    the app was built) and allows it when it lies in ``GRADIO_TEMP_DIR`` as it is at the event: the two are one
    folder unless that variable is changed while the app runs (it is not, in production)."""
    data = service.csv_bytes(table)
    return OUTPUT_SPACE.store(folder, f"{stem}-{secrets.token_hex(4)}.csv", lambda path: path.write_bytes(data),
                              len(data))


def write_zip(model, name: str, folder) -> str | None:
    """``model`` (a Classifier) as the checkpoint zip ``name`` in ``folder`` (gradio's cache), inside
    :data:`OUTPUT_SPACE` (:data:`ZIP_RESERVE_BYTES` while it is written); None when it is full."""
    from ..checkpoint import save_zip

    return OUTPUT_SPACE.store(folder, name, lambda path: save_zip(model, path), ZIP_RESERVE_BYTES)


class UploadRate:
    """A token bucket per client: ``burst`` upload requests at once, refilled at ``per_minute``; the buckets of at
    most ``max_clients`` clients are kept (the least recently seen forgotten first: a forgotten client starts full,
    as a new one would)."""

    def __init__(self, per_minute: float = UPLOADS_PER_MINUTE, burst: int | None = None,
                 max_clients: int = MAX_RATE_CLIENTS):
        self.per_minute = per_minute
        self.burst = max(1, int(per_minute)) if burst is None else burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client → (tokens, when)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float | None = None) -> float:
        """Take one request's token for ``client``: 0.0 if it had one, else the seconds until it will."""
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, since = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - since) * rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate if rate > 0 else math.inf
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait


EXPORT_RATE = UploadRate(per_minute=EXPORTS_PER_MINUTE)


def export_wait(request) -> float:
    """Take one CSV export's token from :data:`EXPORT_RATE` for the client of ``request`` (a gr.Request, or None):
    0.0 if it had one, else the seconds until it will."""
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    return EXPORT_RATE.take(client_key({"client": (host, 0) if host else None}))


def client_key(scope) -> str:
    """Who sends a request: its client's address (uvicorn's, X-Forwarded-For only from a trusted proxy); an IPv6
    address by its /64 network (one host can hold all of one)."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAMETER = re.compile(rb'[ \t]*;[ \t]*(' + _TOKEN + rb')=(' + _TOKEN + rb'|"(?:[^"\\\r\n]|\\[^\r\n])*")[ \t]*')
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]\Z")  # RFC 2046, 5.1.1


def upload_boundary(content_type: bytes) -> bytes:
    """The boundary of an upload's ``Content-Type``; ValueError saying what is wrong unless it is
    ``multipart/form-data`` with exactly one boundary (and no other parameter twice), valid by RFC 2046 (1 to 70
    of its characters, not ending in a space), and read the same by gradio's parser (python_multipart)."""
    media = content_type.split(b";", 1)[0]
    if media.strip(b" \t").lower() != b"multipart/form-data":
        raise ValueError("an upload must be sent as multipart/form-data")
    params: dict[bytes, bytes] = {}
    at = len(media)
    while at < len(content_type):
        match = _PARAMETER.match(content_type, at)
        if match is None:
            raise ValueError("the upload's Content-Type header cannot be read")
        name, value = match[1].lower(), match[2]
        if name in params:
            raise ValueError(f"the upload's Content-Type header has more than one {name.decode()} parameter")
        params[name] = re.sub(rb"\\(.)", rb"\1", value[1:-1]) if value.startswith(b'"') else value
        at = match.end()
    boundary = params.get(b"boundary", b"")
    if not _BOUNDARY.match(boundary):
        raise ValueError("the upload's multipart boundary is missing or not valid (RFC 2046: 1 to 70 letters, "
                         "digits or '()+_,-./:=? and spaces, not ending in a space)")
    kind, theirs = parse_options_header(content_type)
    if kind != b"multipart/form-data" or theirs.get(b"boundary") != boundary:
        raise ValueError("the upload's Content-Type header is ambiguous")
    return boundary


def _is_upload(scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/upload")


class BodyDeadline:
    """ASGI middleware: a request's body must arrive whole within ``seconds`` of its headers; after that the request
    gets 408 (if nothing was answered yet), the app a disconnect, and the connection is closed. Once the body is
    in, ``receive`` is passed through untouched (a streamed response listens on it for the client going away)."""

    def __init__(self, app, seconds: float = BODY_SECONDS):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        state = {"body_in": False, "answered": False, "timed_out": False}

        async def receive_in_time():
            if state["body_in"] or state["timed_out"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                state["timed_out"] = True
                if not state["answered"]:
                    state["answered"] = True
                    await _respond(send, 408, f"the request's body did not arrive within {self.seconds:g} s",
                                   close=True)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body"):
                state["body_in"] = True
            return message

        async def send_unless_timed_out(message):
            if state["timed_out"]:
                return  # the 408 was the answer (or the connection is being closed)
            if message["type"] == "http.response.start":
                state["answered"] = True
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_unless_timed_out)
        except Exception:
            if not state["timed_out"]:
                raise  # after a timeout, whatever the app makes of the disconnect is moot


class UploadLimit:
    """ASGI middleware for upload requests (``POST …/upload``), before gradio reads or stores any of them:

    - more than ``rate`` allows from the client → 429 with Retry-After;
    - a Content-Type that is not exactly one valid ``multipart/form-data`` boundary (:func:`upload_boundary`) → 400;
    - more than ``max_files`` files or ``max_bytes`` bytes → 413;
    - its bytes do not fit in ``space`` → 413 "the server's upload space is full, try again in a few minutes".

    Every refusal is a one-line reason and stores nothing. A body that stops arriving is :class:`BodyDeadline`'s
    (outside this one) to end; a client that goes away mid-body has nothing passed on."""

    FULL = "the server's upload space is full, try again in a few minutes"

    def __init__(self, app, max_files: int = MAX_FILES_PER_REQUEST, max_bytes: int = MAX_REQUEST_BYTES,
                 space: UploadSpace | None = None, rate: UploadRate | None = None):
        self.app, self.max_files, self.max_bytes = app, max_files, max_bytes
        self.space = UPLOAD_SPACE if space is None else space
        self.rate = UploadRate() if rate is None else rate

    async def __call__(self, scope, receive, send):
        if not _is_upload(scope):
            return await self.app(scope, receive, send)
        wait = self.rate.take(client_key(scope))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            return await _respond(send, 429, f"too many uploads from your address (at most "
                                             f"{self.rate.per_minute:g} a minute): try again in {seconds} s",
                                  headers=[(b"retry-after", str(seconds).encode())])
        headers = scope.get("headers") or []
        kinds = [value for key, value in headers if key == b"content-type"]
        try:
            if len(kinds) != 1:
                raise ValueError("an upload needs exactly one Content-Type header")
            boundary = upload_boundary(kinds[0])
        except ValueError as err:
            return await _respond(send, 400, str(err))
        too_big = f"an upload request may hold at most {self.max_bytes:,} bytes"
        length = next((value for key, value in headers if key == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _respond(send, 413, too_big)
        reserved = self.space.charge(self.max_bytes if length is None else int(length))
        if not self.space.reserve(reserved):
            return await _respond(send, 413, self.FULL)
        passed_on = False
        try:
            body = await self._read(receive, send, boundary, too_big)
            if body is None:
                return
            reserved = self.space.shrink(reserved, self.space.charge(len(body)))
            passed_on = True
            await self._pass_on(scope, body, send, reserved)
        finally:
            if not passed_on:
                self.space.release(reserved)

    async def _read(self, receive, send, boundary: bytes, too_big: str) -> bytes | None:
        """The whole (small, capped) body, counting bytes and file parts as they arrive; None when the request was
        refused here or its client went away."""
        seen, marks, tail, body = 0, 0, b"", []
        mark = b"--" + boundary
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away (or BodyDeadline ended it): nothing is passed on
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await _respond(send, 413, too_big)
                return None
            window = tail + chunk
            marks += window.count(mark) - tail.count(mark)
            tail = window[-(len(mark) - 1):]
            body.append(chunk)
            if not message.get("more_body"):
                break
        if marks - 1 > self.max_files:  # n parts have n + 1 boundary lines
            await _respond(send, 413, f"an upload request may hold at most {self.max_files} file(s)")
            return None
        return b"".join(body)

    async def _pass_on(self, scope, body: bytes, send, reserved: int) -> None:
        """gradio gets the body; the reservation ends on the files its answer names (or, unclear, stays)."""
        replay = iter([{"type": "http.request", "body": body, "more_body": False}])
        answer: list[bytes]  # the start of the answer's body
        status, answer = None, []

        async def receive_again():
            return next(replay, {"type": "http.disconnect"})

        async def send_and_watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and sum(map(len, answer)) < 1 << 20:
                answer.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_again, send_and_watch)
        finally:
            self.space.keep(reserved, _stored_paths(status, b"".join(answer)))


def _stored_paths(status, answer: bytes) -> list[str] | None:
    """The files a finished upload stored (gradio answers 200 with the list of their paths); None when that is not
    known (an error: a refusal by gradio may leave a temp file)."""
    if status != 200:
        return None
    try:
        paths = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return None
    return paths


async def _respond(send, status: int, reason: str, headers=(), close: bool = False) -> None:
    body = reason.encode()
    head = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            *headers] + ([(b"connection", b"close")] if close else [])
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class NoRemoteFiles:
    """ASGI middleware: a request (other than an upload) whose JSON body holds a gradio file whose ``path`` is an
    http(s) URL is refused with 400. gradio would fetch that URL into its cache before the event runs (its
    preprocessing: ``Block.async_move_resource_to_block_cache``), with no cap on the size; the Batch tab's file input
    takes one from any script that calls its event as the page does, so such files would fill the disk around
    :class:`UploadSpace`. A file is given by uploading it (``/upload``), where the limits hold. Other bodies pass on
    untouched (read whole first, as the routes read them anyway)."""

    REASON = "a file must be uploaded to this server (…/upload), not given as a URL for it to fetch"

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or _is_upload(scope):
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away (or BodyDeadline ended it)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if _names_a_remote_file(body):
            return await _respond(send, 400, self.REASON)
        replay = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive_again():
            message = next(replay, None)
            return message if message is not None else await receive()  # then: the disconnect, when it comes

        return await self.app(scope, receive_again, send)


def _names_a_remote_file(body: bytes) -> bool:
    """Whether ``body``, read as JSON the way the routes read it, holds a gradio file (gradio_client's test: a dict
    whose meta._type is gradio.FileData) whose path is an http(s) URL."""
    if not body or (b"FileData" not in body and b"\\u" not in body):  # cheap: most bodies hold neither
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False  # the route refuses it
    from gradio_client.utils import is_file_obj_with_meta, is_http_url_like

    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if is_file_obj_with_meta(item) and is_http_url_like(item.get("path")):
                return True
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


class LastArgumentDefault:
    """A REST call (``POST …/call/<endpoint>``) that leaves out a public endpoint's last argument gets its default,
    as gradio_client and the MCP tools already do: an argument added last (the prior) then keeps every existing call
    answering as before. gradio itself refuses a call with fewer values than inputs. ``last``: {endpoint: (number of
    arguments, the last one's default)}. Only a JSON body whose ``data`` is a list exactly one value short is changed
    (already read whole by :class:`NoRemoteFiles`, the layer outside this one)."""

    PATH = re.compile(r"/(?:call|run)/(\w+)/?$")

    def __init__(self, app, last: Mapping[str, tuple[int, object]]):
        self.app, self.last = app, last

    async def __call__(self, scope, receive, send):
        match = self.PATH.search(scope.get("path", "")) if scope["type"] == "http" and scope["method"] == "POST" \
            else None
        if match is None or match.group(1) not in self.last:
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = _with_last_default(b"".join(chunks), *self.last[match.group(1)])
        replay = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive_again():
            message = next(replay, None)
            return message if message is not None else await receive()

        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        return await self.app(scope, receive_again, send)


def _with_last_default(body: bytes, n_arguments: int, default) -> bytes:
    """``body`` with ``default`` appended to its ``data`` list when that holds ``n_arguments - 1`` values; else as
    it was (the route judges it)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list) \
            or len(payload["data"]) != n_arguments - 1:
        return body
    payload["data"].append(default)
    return json.dumps(payload).encode()


def middleware(last_defaults: Mapping[str, tuple[int, object]] | None = None, **limits) -> list[Middleware]:
    """The app's middleware, outermost first, for ``launch(app_kwargs={"middleware": ...})``: the body deadline,
    the refusal of files given as URLs, the public endpoints' left-out last argument (``last_defaults``:
    :class:`LastArgumentDefault`), then the upload limits. ``limits`` (tests lower them): ``body_seconds`` and
    :class:`UploadLimit`'s arguments."""
    body_seconds = limits.pop("body_seconds", BODY_SECONDS)
    return [Middleware(BodyDeadline, seconds=body_seconds), Middleware(NoRemoteFiles),
            Middleware(LastArgumentDefault, last=last_defaults or {}), Middleware(UploadLimit, **limits)]


_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline on whatever the client still owes: a request's line and headers
    within :data:`HEADER_SECONDS` of the connection opening or the previous response ending, and its body within
    :data:`BODY_SECONDS` (+ 2 s, after :class:`BodyDeadline`'s 408) of its headers — which also ends a client that
    trickles the rest of a body the app already refused. Past it the connection is closed (after a 408 if the client
    had sent part of a request and got no answer). Read each connection: tests can lower the two settings."""

    _timer: asyncio.TimerHandle | None = None
    _waiting_for: str | None = None  # "headers", "body" or None
    _header_bytes = 0
    _upgraded = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for == "headers":
            self._header_bytes += len(data)
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def handle_websocket_upgrade(self, event) -> None:
        self._upgraded = True  # the transport is the WebSocket protocol's from now on
        self._stop()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc) -> None:
        self._stop()
        super().connection_lost(exc)

    def _watch(self) -> None:
        state = self.conn.their_state
        waiting = None
        if not self._upgraded and self.transport is not None and not self.transport.is_closing():
            waiting = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if waiting == self._waiting_for:
            return
        self._stop()
        self._waiting_for = waiting
        if waiting is not None:
            self._header_bytes = 0
            seconds = HEADER_SECONDS if waiting == "headers" else BODY_SECONDS + 2.0
            self._timer = self.loop.call_later(seconds, self._time_out)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._waiting_for = None, None

    def _time_out(self) -> None:
        waiting, self._timer, self._waiting_for = self._waiting_for, None, None
        if self._upgraded or self.transport.is_closing():
            return
        answered = self.cycle is not None and self.cycle.response_started and waiting == "body"
        if not answered and (waiting == "body" or self._header_bytes):
            reason = f"the request did not arrive within {HEADER_SECONDS if waiting == 'headers' else BODY_SECONDS:g} s"
            self.transport.write(_TIMEOUT_408 + f"content-length: {len(reason)}\r\n\r\n{reason}".encode())
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's further sends go nowhere
            self.cycle.message_event.set()
        self.transport.close()


def bound_slow_connections() -> bool:
    """Make uvicorn's "auto" HTTP protocol (the one gradio's launch asks for) :class:`DeadlineH11Protocol`, for every
    uvicorn server this process starts from now on; returns whether it could: only where "auto" is h11 (uvicorn
    without httptools, as gradio installs it). Elsewhere only :class:`BodyDeadline` holds."""
    from uvicorn import config
    from uvicorn.protocols.http import auto

    ours = f"{__name__}:DeadlineH11Protocol"
    if config.HTTP_PROTOCOLS.get("auto") == ours:
        return True
    if auto.AutoHTTPProtocol is not H11Protocol:
        return False
    config.HTTP_PROTOCOLS["auto"] = ours
    return True
