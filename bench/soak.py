"""Soak: does the served app stay bounded in memory and on disk under many fresh sessions, and stay correct?

Two servers, one after the other, each in a subprocess on a free port with the offline environment, a fresh
``GRADIO_TEMP_DIR`` (gradio's cache, measured on disk), a fresh ``TMPDIR`` (where ``service.write_csv`` keeps the
Batch tab's CSV exports) and ``NAMECLS_CACHE_SECONDS`` (the cache's sweep period and file age; the app's default
is 600 s, the soak uses ``--cache-seconds``):

1. ``python app.py`` exactly as deployed. One ``/predict_batch`` call of ``--names`` names (the first call), then
   phase A: ``--sessions`` fresh sessions, each one ``/predict_batch`` call of those names (models alternate
   GRU / RNN), ``--clients`` at once; then phase B: the same again. Floors: resident memory (RSS, the process and
   its children) after A ≤ ``--growth-floor-mb`` above the RSS after the first call; over phase B no upward
   trend: RSS after B − after A ≤ ``--trend-floor-mb`` (the sessions themselves, ~0.21 MB each, stay until the
   app's session cap, ``namecls.ui.server.SESSION_CAPACITY``).
2. The app built with ``ui_visibility="undocumented"`` (this file with ``--serve``, as bench/load.py does), so the
   Batch tab's own event ``/ui_batch`` can be called: ``--mix-sessions`` fresh sessions, ``--mix-clients`` at
   once, each calling ``/predict`` and ``/trace`` and (every other session) uploading a .txt of
   ``--upload-names`` names through ``/ui_batch``. Every ``--bad-every``-th session also sends input the app
   must refuse (an empty name; a file of 10,001 names): those errors are expected, and must carry a message.
   Then the cache: its size on disk before, after the mix, and after waiting past two cleanup periods; floor: no
   file the soak made (an upload or a result) older than the interval remains.

3. ``--minutes N`` (instead of 1 and 2): one server as in 2, then for N minutes a steady stream of fresh sessions,
   ``--timed-clients`` at once, each calling ``/predict``, ``/predict_details``, ``/trace``, ``/predict_batch``
   (``--session-names`` names), the Step-through tab's ``/ui_trace`` and ``/ui_next`` twice (its gr.State), and
   (every other session) a ``/ui_batch`` upload; every ``--bad-every``-th also the refused input of 2. Far more
   sessions than the app's cap are made. RSS (process and children), the sessions so far and the bytes of gradio's
   cache are sampled every ``--curve-seconds``, then ``--idle-seconds`` more with no traffic. The curve is printed
   a row per minute (``--curve-csv``: every sample as CSV); the verdict is the least-squares slope of RSS over the
   stream's second half, MB per 10 minutes, with its 95% interval: PASS if the interval includes 0 or the slope is
   below ``--plateau-floor-mb``. ``--diagnostics`` makes the server log what it holds every minute (gradio's
   sessions and queue dicts, its temp-file sets, the app's stores, gc objects by type, glibc's heap) and the report
   says what grew once the session cap was full; ``--tracemalloc`` adds allocation sites (slow).

Every answer is compared with a serial reference computed in this process with ``namecls.serving.service`` on the same
names (0 differences expected). Errors are counted and split into clear ones (gradio_client's ``AppError`` with
the app's own message) and others. RSS is sampled every ``--sample-seconds`` by a thread (for the peaks), and read
``--settle-seconds`` after each phase (the sweeper drops gradio's stored copies of output values every 2 s).
A session is a ``gradio_client.Client`` with a new session hash (``reset_session``): what a fresh script sees.

    python bench/soak.py                            # the defaults: 10,000 names a batch, well over 10 min on 2 cores
    python bench/soak.py --names 2000               # what bench/README.md reports, about 8 min
    python bench/soak.py --sessions 20 --mix-sessions 40 --cache-seconds 10    # a quick look
    python bench/soak.py --minutes 60 --cache-seconds 600 --curve-csv curve.csv    # the hour (issue 18)
    python bench/soak.py --minutes 4 --diagnostics                                 # a short look at the growth
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import OFFLINE, ROOT, free_port, machine, pct, start_server, stop_group

K = 3
GENERIC = "The upstream Gradio app has raised an exception"  # gradio_client's text when the app gave no message


# ---------------------------------------------------------------------------------------------------------------
# The mix server (this file with --serve): the app with its UI events callable, launched as app.py launches


# With DIAG_ENV set (seconds), the --serve server writes one line "SOAKDIAG {json}" to its log that often: what it
# holds (server_snapshot). With TRACEMALLOC_ENV set too (frames), tracemalloc runs from start-up and each line also
# holds the allocation sites that grew most since the first line (slow: for a look, not for the hour's curve).
DIAG_ENV = "NAMECLS_SOAK_DIAG_SECONDS"
CAPACITY_ENV = "NAMECLS_SOAK_SESSION_CAPACITY"  # --session-capacity: the served app's session cap, for a short look
TRACEMALLOC_ENV = "NAMECLS_SOAK_TRACEMALLOC"
DIAG_PREFIX = "SOAKDIAG "


def serve(port: int) -> None:
    diag_seconds = float(os.environ.get(DIAG_ENV) or 0)
    if diag_seconds and int(os.environ.get(TRACEMALLOC_ENV) or 0):
        import tracemalloc

        tracemalloc.start(int(os.environ[TRACEMALLOC_ENV]))
    import torch

    torch.set_num_threads(int(os.environ.get("NAMECLS_TORCH_THREADS") or 1))  # as app.py's __main__
    sys.path.insert(0, str(ROOT))
    import app

    demo = app.build_demo(ui_visibility="undocumented")
    if diag_seconds:
        threading.Thread(target=diagnose, args=(demo, diag_seconds), name="soak-diagnostics", daemon=True).start()
    kwargs = app.launch_kwargs()
    if os.environ.get(CAPACITY_ENV):
        kwargs["state_session_capacity"] = int(os.environ[CAPACITY_ENV])
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, **kwargs)


def _mallinfo() -> dict:
    """glibc's heap figures (all arenas), MB: in use, free inside the heap, and mmapped blocks; {} elsewhere."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = Mallinfo2
    m = fn()
    return {"malloc_heap_mb": m.arena / 2**20, "malloc_used_mb": m.uordblks / 2**20,
            "malloc_free_mb": m.fordblks / 2**20, "malloc_mmap_mb": m.hblkhd / 2**20}


def _queue_bytes(queue) -> int:
    """The bytes of an empty-ish asyncio.Queue: itself, its attributes' dict, its three deques and its Event."""
    size = sys.getsizeof(queue) + sys.getsizeof(vars(queue))
    for name in ("_queue", "_getters", "_putters"):
        size += sys.getsizeof(getattr(queue, name, None))
    finished = getattr(queue, "_finished", None)
    if finished is not None:
        size += sys.getsizeof(finished) + sys.getsizeof(vars(finished)) + sys.getsizeof(finished._waiters)
    return size


def server_snapshot(demo) -> dict:
    """What the server process holds (run inside it): gradio's per-session state (``state_holder``: sessions,
    closed ones, gr.State values, stored output values, components replaced per session), its queue's per-session
    and per-event dicts, its iterators and streams, the files its components track for the cache cleanup
    (``temp_file_sets``), the app's own stores (trained models, upload space), threads, open files, Python's
    allocated blocks, glibc's heap, and the gc-tracked objects by type (counts ≥ 100)."""
    import collections
    import gc

    from namecls.ui import server, yours

    d: dict = {"t": time.time()}
    holder = getattr(demo, "state_holder", None)
    if holder is not None:
        with holder.lock:
            sessions = list(holder.session_data.values())
            d["time_last_used"] = len(holder.time_last_used)
        defaults = demo.default_config.blocks
        d["capacity"] = holder.capacity
        d["sessions"] = len(sessions)
        d["closed"] = sum(1 for s in sessions if s.is_closed)
        d["state_values"] = sum(1 for s in sessions for v in list(s.state_data.values()) if v is not None)
        d["config_values"] = sum(len(s.config_values) for s in sessions)
        d["values_kept"] = sum(1 for s in sessions for c in list(s.config_values.values())
                               if isinstance(c, dict) and (c.get("props") or {}).get("value") is not None)
        d["blocks_replaced"] = sum(1 for s in sessions for k, b in list(s.blocks_config.blocks.items())
                                   if defaults.get(k) is not b)
    q = getattr(demo, "_queue", None)
    if q is not None:
        queues = list(q.pending_messages_per_session.values())
        d["q_message_queues"] = len(queues)
        d["q_messages_waiting"] = sum(m.qsize() for m in queues)
        d["q_message_queues_kb"] = sum(_queue_bytes(m) for m in queues) / 1024
        id_sets = list(q.pending_event_ids_session.items())
        d["q_event_id_sessions"] = len(id_sets)
        d["q_event_id_sessions_empty"] = sum(1 for _, v in id_sets if not v)
        d["q_event_id_sessions_kb"] = (sys.getsizeof(q.pending_event_ids_session)
                                       + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in id_sets)) / 1024
        d["q_event_ids"] = sum(len(v) for _, v in id_sets)
        d["q_events"] = len(q.event_ids_to_events)
        d["q_queued"] = sum(len(e.queue) for e in list(q.event_queue_per_concurrency_id.values()))
        d["q_analytics"] = len(getattr(q, "event_analytics", {}))
    app = getattr(demo, "server_app", None)
    if app is not None:
        d["iterators"] = len(app.iterators)
        d["iterators_to_reset"] = len(app.iterators_to_reset)
    d["pending_streams"] = len(getattr(demo, "pending_streams", {}))
    d["pending_diff_streams"] = len(getattr(demo, "pending_diff_streams", {}))
    paths = [path for files in list(getattr(demo, "temp_file_sets", [])) for path in list(files)]
    d["temp_files"] = len(paths)
    d["temp_files_gone"] = sum(1 for path in paths if not os.path.exists(path))  # deleted, still tracked
    d["trained"] = len(yours.TRAINED)
    d["trained_gone"] = len(yours.TRAINED._gone)
    space = getattr(server, "UPLOAD_SPACE", None)
    if space is not None:
        d["upload_files"] = len(space._files)
        d["upload_unclaimed"] = len(space._unclaimed)
        d["upload_mb"] = space.used / 2**20
    d["threads"] = threading.active_count()
    try:
        d["fds"] = len(os.listdir("/proc/self/fd"))
        d["rss_mb"] = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        pass
    d["py_blocks"] = sys.getallocatedblocks()
    d.update(_mallinfo())
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    d["gc_objects"] = sum(counts.values())
    d["gc_types"] = {name: n for name, n in counts.most_common() if n >= 100}
    return d


def diagnose(demo, seconds: float) -> None:
    """The --serve server's diagnostics thread: a ``server_snapshot`` line every ``seconds`` on stdout (the log)."""
    first = None
    while True:
        time.sleep(seconds)
        for _ in range(3):  # the dicts change under us: a RuntimeError is tried again
            try:
                line = server_snapshot(demo)
                break
            except RuntimeError as err:
                line = {"t": time.time(), "error": repr(err)}
            except Exception as err:  # noqa: BLE001 - the thread must live on, and say what went wrong
                line = {"t": time.time(), "error": repr(err)}
                break
        import tracemalloc

        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            line["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
            if first is None:
                first = snap
            top = snap.compare_to(first, "lineno")[:12]
            line["traced_growth"] = [(str(s.traceback[0]), s.size_diff / 2**20, s.count_diff) for s in top]
        print(DIAG_PREFIX + json.dumps(line, default=str), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Measuring the server


def rss_mb(proc) -> float:
    """Resident memory of the process and all its children, MB."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


class Sampler(threading.Thread):
    """Reads the server's RSS every ``seconds``; ``peak(since)`` is the highest sample since a time."""

    def __init__(self, proc, seconds: float):
        super().__init__(daemon=True)
        self.proc, self.seconds, self.samples, self.stopped = proc, seconds, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.samples.append((time.monotonic(), rss_mb(self.proc)))
            self.stopped.wait(self.seconds)

    def peak(self, since: float) -> float:
        return max((mb for t, mb in self.samples if t >= since), default=float("nan"))


def walk(folder: Path) -> dict:
    """Files under ``folder``: {path: (bytes, ctime)} (gradio ages its cache files by st_ctime)."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            files[str(path)] = (st.st_size, st.st_ctime)
    return files


def describe(files: dict, root: Path | None = None) -> str:
    """Count and size; with ``root`` (gradio's cache), uploads/results (in <root>/<sha256>/) apart from the rest."""
    size = sum(b for b, _ in files.values())
    if root is None:
        return f"{len(files):,} files, {size / 2**20:.2f} MB"
    kept = [b for p, (b, _) in files.items() if Path(p).parent != root]
    return (f"{len(kept):,} uploads/results ({sum(kept) / 2**20:.2f} MB) + {len(files) - len(kept):,} other "
            f"files ({(size - sum(kept)) / 2**20:.2f} MB)")


def start(cmd: list[str], env: dict, log_path: Path, timeout: float = 240):
    """Start a server; return (process, url) once ``/predict`` answers."""
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, **OFFLINE, **env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    url = f"http://127.0.0.1:{port}/"

    def ready():
        client = Client(url, verbose=False)
        client.predict("Nguyen", "gru", K, api_name="/predict")
        client.close()

    proc = start_server(cmd + ["--port", str(port)] if "--serve" in cmd else cmd, env, log_path, ready, timeout,
                        poll=0.5)
    return proc, url


# ---------------------------------------------------------------------------------------------------------------
# Clients: each thread holds one gradio_client.Client and starts a fresh session (new session hash) per session


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True, default=str)


class Tally:
    """Errors (clear or not), expected refusals, wrong answers, latencies; thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls, self.latency = {}, {}
        self.clear, self.unclear, self.wrong = [], [], []
        self.refusals_clear, self.refusals_unclear, self.refusals_missing = [], [], []

    def call(self, endpoint: str, fn, expected: str | None = None, check=None, refusal: bool = False):
        """Run one request; ``expected`` is the canonical serial answer (or ``check(answer)`` returns a
        difference or None); ``refusal``: the app must refuse it with a message."""
        from gradio_client.exceptions import AppError

        began = time.perf_counter()
        try:
            answer = fn()
        except Exception as err:  # noqa: BLE001 - every failure is counted and described
            message = str(err).strip()
            clear = isinstance(err, AppError) and bool(message) and not message.startswith(GENERIC)
            line = f"{endpoint}: {type(err).__name__}: {message[:200]}"
            with self.lock:
                self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
                if refusal:
                    (self.refusals_clear if clear else self.refusals_unclear).append(line)
                else:
                    (self.clear if clear else self.unclear).append(line)
            return None
        seconds = time.perf_counter() - began
        if refusal:
            problem = f"accepted input it should refuse: {str(answer)[:120]}"
        elif check is not None:
            problem = check(answer)
        else:
            got = canonical(answer)
            problem = None if got == expected else f"got {got[:120]}… expected {expected[:120]}…"
        with self.lock:
            self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
            self.latency.setdefault(endpoint, []).append(seconds)
            if problem:
                (self.refusals_missing if refusal else self.wrong).append(f"{endpoint}: {problem}")
        return answer

    def errors(self) -> int:
        return len(self.clear) + len(self.unclear)


def run_sessions(url: str, n_sessions: int, n_clients: int, job, tally: Tally, on_done=None,
                 until: float | None = None) -> float:
    """``n_sessions`` fresh sessions over ``n_clients`` threads; ``job(client, i)`` runs session i. Returns the
    wall time. ``on_done(count)`` runs after every finished session. With ``until`` (a ``time.monotonic()``), no
    session starts after it (those under way finish)."""
    from gradio_client import Client

    counter = itertools.count()
    done = itertools.count(1)
    clients = [Client(url, verbose=False, download_files=False) for _ in range(n_clients)]

    def worker(client):
        while (until is None or time.monotonic() < until) and (i := next(counter)) < n_sessions:
            client.reset_session()  # a new session hash: gradio sees a new visitor
            job(client, i)
            if on_done is not None:
                on_done(next(done))

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    for c in clients:
        c.close()
    return wall


# ---------------------------------------------------------------------------------------------------------------
# Names and the serial reference


def load_names(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` real surnames from the data files (shuffled with a fixed seed; repeated if n exceeds them)."""
    names = [line.strip() for f in sorted(folder.glob("*.txt"))
             for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(names)
    return list(itertools.islice(itertools.cycle(names), n))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    if len(points) < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report_tallies(tallies: dict, floors: list) -> None:
    """Latency per endpoint, the errors and wrong answers of every phase (a few of each written out), then the
    floors (``floors`` gains the error and answer floors)."""
    print("\n| phase | endpoint | calls | p50 ms | p99 ms |\n|---|---|---:|---:|---:|")
    for phase, tally in tallies.items():
        for endpoint in sorted(tally.calls):
            lat = tally.latency.get(endpoint, [])
            print(f"| {phase} | {endpoint} | {tally.calls[endpoint]:,} | {1000 * pct(lat, 50):.0f} | "
                  f"{1000 * pct(lat, 99):.0f} |")
    print("\n| phase | errors | clear (AppError, the app's message) | not clear | wrong answers | expected "
          "refusals with a message | refusals without one | bad input accepted |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for phase, tally in tallies.items():
        print(f"| {phase} | {tally.errors()} | {len(tally.clear)} | {len(tally.unclear)} | {len(tally.wrong)} | "
              f"{len(tally.refusals_clear)} | {len(tally.refusals_unclear)} | {len(tally.refusals_missing)} |")
    for phase, tally in tallies.items():
        for kind, lines in (("error", tally.clear + tally.unclear), ("wrong", tally.wrong),
                            ("refusal", tally.refusals_clear[:2] + tally.refusals_unclear),
                            ("accepted", tally.refusals_missing)):
            for line in sorted(set(lines))[:4]:
                print(f"- {phase} {kind}: {line}")
    errors = sum(t.errors() for t in tallies.values())
    unclear = sum(len(t.refusals_unclear) + len(t.refusals_missing) for t in tallies.values())
    wrong = sum(len(t.wrong) for t in tallies.values())
    floors.append(("errors: 0 on valid input; every refusal a clear message",
                   f"{errors} errors on valid input ({sum(len(t.unclear) for t in tallies.values())} without the "
                   f"app's message), {unclear} unclear or missing refusals",
                   errors == 0 and unclear == 0))
    floors.append(("answers that differ from the serial reference: 0", f"{wrong}", wrong == 0))
    print("\n## Floors\n")
    print("| floor | measured | |\n|---|---|---|")
    for floor, figure, ok in floors:
        print(f"| {floor} | {figure} | {verdict(ok)} |")


# ---------------------------------------------------------------------------------------------------------------
# The time-boxed soak (--minutes): one mix server, a steady stream of fresh sessions, the memory curve


def plateau(points: list[tuple[float, float]]) -> dict:
    """Least-squares slope of RSS (MB) on time (minutes) over ``points``, in MB per 10 minutes, with its 95%
    interval (Student's t on the fit's standard error: samples a few seconds apart are not independent, so the
    interval is narrower than it should be; the floor covers that), and max − min."""
    from scipy import stats

    xs, ys = [x for x, _ in points], [y for _, y in points]
    out = {"n": len(points), "spread": (max(ys) - min(ys)) if ys else float("nan")}
    if len(points) < 3 or max(xs) == min(xs):
        return {**out, "slope": float("nan"), "lo": float("nan"), "hi": float("nan")}
    fit = stats.linregress(xs, ys)
    half = stats.t.ppf(0.975, len(points) - 2) * fit.stderr
    return {**out, "slope": 10 * fit.slope, "lo": 10 * (fit.slope - half), "hi": 10 * (fit.slope + half)}


def read_diagnostics(log: Path) -> list[dict]:
    """The SOAKDIAG lines of a --serve server's log."""
    lines = []
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return lines
    for line in text.splitlines():
        if line.startswith(DIAG_PREFIX):
            try:
                lines.append(json.loads(line[len(DIAG_PREFIX):]))
            except json.JSONDecodeError:
                pass
    return lines


DIAG_COLUMNS = [  # (key, header) of the diagnostics table
    ("sessions", "sessions held"), ("closed", "closed"), ("state_values", "gr.State values"),
    ("values_kept", "output values kept"), ("blocks_replaced", "components replaced"),
    ("q_message_queues", "queue: message queues"), ("q_messages_waiting", "messages waiting"),
    ("q_message_queues_kb", "their KB"), ("q_event_id_sessions", "queue: event-id sets"),
    ("q_event_id_sessions_empty", "empty"), ("q_event_id_sessions_kb", "their KB"), ("q_events", "queue: events"),
    ("iterators", "iterators"), ("temp_files", "temp_file_sets paths"), ("temp_files_gone", "of deleted files"),
    ("trained_gone", "TRAINED._gone"), ("upload_files", "upload space files"),
    ("threads", "threads"), ("fds", "fds"), ("gc_objects", "gc objects"), ("py_blocks", "Python blocks"),
    ("malloc_used_mb", "malloc used MB"), ("malloc_free_mb", "malloc free MB"), ("malloc_mmap_mb", "mmap MB"),
    ("rss_mb", "RSS MB (server)"),
]


def report_diagnostics(diags: list[dict], stream_began: float, capacity: int) -> None:
    """The server's own view, a row per diagnostics line, then what grew after the session cap filled: the
    counters and the gc-tracked types (and tracemalloc's sites, if it ran)."""
    diags = [d for d in diags if "error" not in d]
    if not diags:
        print("\n(no diagnostics lines in the server log)")
        return
    print("\n## What the server holds (its own diagnostics, one line a minute)\n")
    print("| minute | " + " | ".join(h for _, h in DIAG_COLUMNS) + " |")
    print("|---:|" + "---:|" * len(DIAG_COLUMNS))
    for d in diags:
        cells = []
        for key, _ in DIAG_COLUMNS:
            v = d.get(key)
            cells.append("–" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")
        print(f"| {(d['t'] - stream_began) / 60:.1f} | " + " | ".join(cells) + " |")
    full = [d for d in diags[:-1] if d.get("sessions", 0) >= capacity]  # the last line is what it is compared with
    base = full[0] if full else diags[(len(diags) - 1) // 2]
    last = diags[-1]
    span = (last["t"] - base["t"]) / 60
    print(f"\nFrom minute {(base['t'] - stream_began) / 60:.1f} "
          f"({'the session cap full' if full else 'half-way: the cap never filled'}) to minute "
          f"{(last['t'] - stream_began) / 60:.1f} ({span:.1f} min):")
    grew = [(h, base.get(k), last.get(k)) for k, h in DIAG_COLUMNS
            if isinstance(base.get(k), (int, float)) and isinstance(last.get(k), (int, float))]
    changed = [f"{h} {a:,.0f} → {b:,.0f}" for h, a, b in grew if abs(b - a) >= max(1.0, 0.02 * abs(a))]
    print("- counters that changed by 2% or more: " + ("; ".join(changed) or "none"))
    types_a, types_b = base.get("gc_types", {}), last.get("gc_types", {})
    growth = sorted(((types_b.get(t, 0) - types_a.get(t, 0), t) for t in set(types_a) | set(types_b)),
                    reverse=True)
    shown = [f"{t} {types_a.get(t, 0):,} → {types_b.get(t, 0):,}" for g, t in growth[:12] if g > 0]
    print("- gc-tracked objects that grew most: " + ("; ".join(shown) or "none"))
    if last.get("traced_growth"):
        print(f"- tracemalloc (since the first line; traced {last.get('traced_mb', 0):.0f} MB):")
        for site, mb, count in last["traced_growth"][:8]:
            print(f"  - {site}: {mb:+.2f} MB, {count:+,} blocks")


def timed(args) -> None:
    """``--minutes``: one mix server, fresh sessions for that long, the RSS curve and its plateau verdict."""
    import torch

    torch.set_num_threads(1)  # the server computes each request on one torch thread: same numbers
    sys.path.insert(0, str(ROOT))
    from gradio_client import handle_file

    from namecls.serving import service
    from namecls.ui.tabs.batch import batch_table
    from namecls.ui.server import SESSION_CAPACITY

    cap = args.session_capacity or SESSION_CAPACITY  # the served app's session cap
    began_run = time.monotonic()
    print(f"# bench/soak.py --minutes, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    print(f"settings: {' '.join(sys.argv[1:])}; {args.minutes:g} min of fresh sessions at {args.timed_clients} "
          f"clients; each: /predict, /predict_details, /trace, /predict_batch of {args.session_names} names, "
          f"/ui_trace + 2 × /ui_next (Step through), every other one a /ui_batch upload of {args.upload_names} "
          f"names, every {args.bad_every}-th input the app must refuse; RSS every {args.curve_seconds:g} s; cache "
          f"interval {args.cache_seconds} s; session cap {cap}\n", flush=True)

    models = service.load_models(None)
    data = Path(args.data)
    t0 = time.perf_counter()
    reference = {}
    pool = load_names(data, 64, seed=1)
    lengths = {}
    for name, model in itertools.product(pool, ("gru", "rnn")):
        reference[("predict", name, model)] = canonical(service.predict(models, name, model, K))
        reference[("details", name, model)] = canonical(service.predict_details(models, name, model, K))
        traced = service.trace(models, name, model)
        reference[("trace", name, model)] = canonical(traced)
        lengths[name] = len(traced["chars"])
    batches = [load_names(data, args.session_names, seed=10 + j) for j in range(4)]
    for j, model in itertools.product(range(len(batches)), ("gru", "rnn")):
        reference[("batch", j, model)] = canonical(service.predict_batch(models, batches[j], model, K))
    uploads = [load_names(data, args.upload_names, seed=20 + j) for j in range(8)]
    for j, model in itertools.product(range(len(uploads)), ("gru", "rnn")):
        table = batch_table(service.predict_batch(models, uploads[j], model, K))
        reference[("ui_batch", j, model)] = canonical(json.loads(table.to_json(orient="values")))
    print(f"serial reference computed in-process in {time.perf_counter() - t0:.1f} s ({len(pool)} names x 2 models "
          f"for /predict, /predict_details, /trace; {len(batches)} batches and {len(uploads)} upload files x 2 "
          f"models)\n", flush=True)

    work = Path(tempfile.mkdtemp(prefix="namecls-soak-"))
    cache, tmp = work / "gradio", work / "tmp"
    for folder in (cache, tmp):
        folder.mkdir(parents=True)
    env = {"NAMECLS_CACHE_SECONDS": str(args.cache_seconds), "GRADIO_TEMP_DIR": str(cache), "TMPDIR": str(tmp),
           "NAMECLS_UPLOADS_PER_MINUTE": "100000",  # every client is 127.0.0.1: one upload bucket for all of them
           **({DIAG_ENV: str(args.diagnostics)} if args.diagnostics else {}),
           **({TRACEMALLOC_ENV: str(args.tracemalloc)} if args.tracemalloc else {}),
           **({CAPACITY_ENV: str(args.session_capacity)} if args.session_capacity else {}),
           **dict(item.split("=", 1) for item in args.server_env)}
    files = []
    for j, chunk in enumerate(uploads):
        path = work / f"upload-{j}.txt"
        path.write_text("\n".join(chunk) + "\n", encoding="utf-8")
        files.append(path)
    too_many = work / "too-many.txt"
    too_many.write_text("\n".join(load_names(data, service.MAX_BATCH_NAMES + 1)) + "\n", encoding="utf-8")
    log = work / "serve.log"
    tally = Tally()
    curve = []  # (seconds since the stream began, part, RSS MB, sessions done, errors, cache bytes, export bytes)
    progress = {"sessions": 0}

    def check_trace(answer, name):
        n = lengths[name]
        texts = [a for a in answer if isinstance(a, str)]
        if not any(f"Character <b>{n}</b> of {n}" in t for t in texts):
            return f"no 'Character {n} of {n}' in the {len(answer)} outputs"
        return None

    def check_step(answer, name, position):
        n, want = lengths[name], min(position + 1, lengths[name])
        if want not in answer or not any(isinstance(a, str) and f"Character <b>{want}</b> of {n}" in a
                                         for a in answer):
            return f"step {position} + 1: expected character {want} of {n}, got {str(answer)[:100]}"
        return None

    def check_upload(answer, j, model):
        summary, table, download = answer
        got, want = canonical(table["data"]), reference[("ui_batch", j, model)]
        if got != want:
            return f"table differs: got {got[:100]}… expected {want[:100]}…"
        if f"**{len(uploads[j]):,}** names" not in summary or not download:
            return f"summary or download missing: {summary[:100]!r}, {str(download)[:80]}"
        return None

    def job(client, i):
        name, model = pool[i % len(pool)], ("gru", "rnn")[i // len(pool) % 2]
        b = i % len(batches)
        tally.call("/predict", lambda: client.predict(name, model, K, api_name="/predict"),
                   expected=reference[("predict", name, model)])
        tally.call("/predict_details", lambda: client.predict(name, model, K, api_name="/predict_details"),
                   expected=reference[("details", name, model)])
        tally.call("/trace", lambda: client.predict(name, model, api_name="/trace"),
                   expected=reference[("trace", name, model)])
        tally.call("/predict_batch", lambda: client.predict(batches[b], model, K, api_name="/predict_batch"),
                   expected=reference[("batch", b, model)])
        traced = tally.call("/ui_trace", lambda: client.predict(name, model, K, "lists", api_name="/ui_trace"),
                            check=lambda a: check_trace(a, name))
        for position in (1, 2):
            tally.call("/ui_next", lambda: client.predict(*next_args(position, traced), api_name="/ui_next"),
                       check=lambda a, position=position: check_step(a, name, position))
        if i % 2 == 0:
            j = i // 2 % len(files)
            tally.call("/ui_batch (upload)", lambda: client.predict(handle_file(str(files[j])), "", model,
                                                                    "lists", api_name="/ui_batch"),
                       check=lambda a: check_upload(a, j, model))
        if args.bad_every and i % args.bad_every == args.bad_every - 1:
            tally.call("/predict (empty name)", lambda: client.predict("", model, K, api_name="/predict"),
                       refusal=True)
            tally.call("/ui_batch (10,001 names)", lambda: client.predict(
                handle_file(str(too_many)), "", model, "lists", api_name="/ui_batch"), refusal=True)

    next_params = []  # /ui_next's parameters after the slider, as the server lists them (read once it is up)

    def next_args(position, traced):
        """What the page sends with Next: the slider's position, then any other input the event reads (a dropdown
        gets the value /ui_trace set on it, anything else its default)."""
        choice = next((a.get("value") for a in traced or () if isinstance(a, dict) and "choices" in a), None)
        return [position] + [choice if c.get("type") == "dropdown" else (c.get("props") or {}).get("value")
                             for c in next_params]

    try:
        report = run_stream(args, env, log, job, tally, curve, progress, next_params, cache, tmp, cap)
        print_curve(args, report, curve, tally, log, cap, began_run)
    finally:
        if args.keep:
            print(f"\n(kept {work}; server log {log})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_stream(args, env, log, job, tally, curve, progress, next_params, cache, tmp, cap) -> dict:
    """Start the mix server, run the stream of sessions for ``args.minutes`` and the idle wait after it, filling
    ``curve``; stop the server. Returns the figures the report needs besides the curve."""
    from gradio_client import Client

    def disk(folder):
        return sum(b for b, _ in walk(folder).values())

    def on_done(count):
        progress["sessions"] = max(progress["sessions"], count)

    duration = 60 * args.minutes
    proc, url = start([sys.executable, str(Path(__file__).resolve()), "--serve"], env, log)
    sampler = Sampler(proc, args.sample_seconds)
    sampler.start()
    stop_curve = threading.Event()
    try:
        probe = Client(url, verbose=False, download_files=False)  # /ui_next is undocumented: read the page's config
        components = {c["id"]: c for c in probe.config["components"]}
        dep = next(d for d in probe.config["dependencies"] if d.get("api_name") in ("ui_next", "/ui_next"))
        next_params[:] = [components[i] for i in dep["inputs"] if components[i].get("type") != "state"][1:]
        probe.close()
        time.sleep(args.settle_seconds)
        idle = rss_mb(proc)
        stream_began, stream_wall = time.monotonic(), time.time()

        def sample(part):
            curve.append((time.monotonic() - stream_began, part, rss_mb(proc), progress["sessions"],
                          tally.errors(), disk(cache), disk(tmp)))

        def curve_loop():
            while not stop_curve.wait(args.curve_seconds):
                sample("stream")

        sample("stream")
        curve_thread = threading.Thread(target=curve_loop, daemon=True)
        curve_thread.start()
        print(f"## {args.minutes:g} min of fresh sessions (server RSS {idle:.0f} MB before)\n", flush=True)
        wall = run_sessions(url, 10**9, args.timed_clients, job, tally, on_done=on_done,
                            until=stream_began + duration)
        stop_curve.set()
        curve_thread.join()
        sample("stream")
        sessions = progress["sessions"]
        print(f"  {sessions:,} sessions in {wall / 60:.1f} min ({60 * sessions / wall:.1f} a minute, "
              f"{sessions / cap:.1f} × the session cap); now idle for {args.idle_seconds:g} s",
              flush=True)
        idle_end = time.monotonic() + args.idle_seconds
        while time.monotonic() < idle_end:
            time.sleep(min(args.curve_seconds, max(0.0, idle_end - time.monotonic())))
            sample("idle")
        peak = sampler.peak(stream_began)
    finally:
        stop_curve.set()
        sampler.stopped.set()
        stop_group(proc, timeout=20)
    return {"idle": idle, "peak": peak, "wall": wall, "sessions": sessions, "stream_wall": stream_wall}


def print_curve(args, report, curve, tally, log, cap, began_run) -> None:
    """The curve a row per minute (and as CSV), the plateau fit over the stream's second half, the server's
    diagnostics, the calls and errors, the floors."""
    import csv

    idle, peak, wall, sessions, stream_wall = (report[k] for k in ("idle", "peak", "wall", "sessions",
                                                                     "stream_wall"))
    stream = [row for row in curve if row[1] == "stream"]
    end = stream[-1][0]
    second = [(sec / 60, mb) for sec, part, mb, *_ in stream if sec >= end / 2]
    fit = plateau(second)
    print(f"\n## Report ({(time.monotonic() - began_run) / 60:.1f} min)\n")
    print("| minute | RSS MB (last sample) | RSS MB (max in the minute) | sessions so far | errors so far | "
          "gradio cache bytes on disk | CSV exports bytes (TMPDIR) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    by_minute: dict[tuple[str, int], list] = {}
    for row in curve:
        by_minute.setdefault((row[1], int(row[0] // 60)), []).append(row)
    for (part, minute), rows in by_minute.items():
        sec, _, mb, done, errs, cache_b, export_b = rows[-1]
        label = f"{minute}" if part == "stream" else f"{minute} (idle)"
        print(f"| {label} | {mb:.0f} | {max(r[2] for r in rows):.0f} | {done:,} | {errs:,} | {cache_b:,} | "
              f"{export_b:,} |")
    print(f"\nRSS before the stream {idle:.0f} MB; peak {peak:.0f} MB (sampled every {args.sample_seconds:g} s); "
          f"at the end of the stream {stream[-1][2]:.0f} MB; after {args.idle_seconds:g} s idle "
          f"{curve[-1][2]:.0f} MB. Sessions: {sessions:,} ({60 * sessions / wall:.1f} a minute; the cap is "
          f"{cap}).")
    print(f"Second half (minute {end / 120:.1f} to {end / 60:.1f}, {fit['n']} samples): slope "
          f"{fit['slope']:+.1f} MB per 10 min (95% interval {fit['lo']:+.1f} … {fit['hi']:+.1f}); "
          f"max − min {fit['spread']:.0f} MB; gradio cache on disk ≤ "
          f"{max((r[5] for r in stream if r[0] >= end / 2), default=0) / 2**20:.1f} MB.")
    if args.curve_csv:
        with open(args.curve_csv, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["seconds", "minute", "part", "rss_mb", "sessions", "errors", "gradio_cache_bytes",
                          "export_bytes"])
            for sec, part, mb, done, errs, cache_b, export_b in curve:
                out.writerow([f"{sec:.1f}", f"{sec / 60:.2f}", part, f"{mb:.1f}", done, errs, cache_b,
                              export_b])
        print(f"(the curve, every sample: {args.curve_csv})")
    if args.diagnostics:
        report_diagnostics(read_diagnostics(log), stream_wall, cap)
    includes_zero = fit["lo"] <= 0 <= fit["hi"]
    floors = [(f"plateau: over the second half the RSS slope's 95% interval includes 0, or the slope is below "
               f"{args.plateau_floor_mb:g} MB per 10 min",
               f"{fit['slope']:+.1f} MB per 10 min ({fit['lo']:+.1f} … {fit['hi']:+.1f}), max − min "
               f"{fit['spread']:.0f} MB over {fit['n']} samples",
               includes_zero or fit["slope"] < args.plateau_floor_mb)]
    floors.append((f"sessions: more than the cap ({cap}) in the run", f"{sessions:,}",
                   sessions > cap))
    report_tallies({"timed": tally}, floors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--names", type=int, default=10_000, help="names per /predict_batch call (default: 10000, the "
                                                             "app's maximum)")
    p.add_argument("--sessions", type=int, default=200, help="fresh sessions in each of phases A and B, one "
                                                             "/predict_batch call each (default: 200)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients in phases A and B (default: 16)")
    p.add_argument("--mix-sessions", type=int, default=300, help="fresh sessions in the mix phase (default: 300)")
    p.add_argument("--mix-clients", type=int, default=24, help="concurrent clients in the mix phase (default: 24)")
    p.add_argument("--upload-names", type=int, default=1000, help="names in each file uploaded to /ui_batch "
                                                                  "(default: 1000)")
    p.add_argument("--bad-every", type=int, default=10, help="every n-th mix session also sends input the app must "
                                                             "refuse (default: 10; 0: none)")
    p.add_argument("--cache-seconds", type=int, default=20, help="NAMECLS_CACHE_SECONDS of the servers: gradio's "
                                                                 "cache sweep period and file age (default: 20; "
                                                                 "the app's own is 600)")
    p.add_argument("--sample-seconds", type=float, default=0.5, help="RSS sampling period for the peaks "
                                                                     "(default: 0.5)")
    p.add_argument("--settle-seconds", type=float, default=5.0, help="wait after each phase before reading its RSS: "
                                                                     "two output sweeps and a bit (default: 5)")
    p.add_argument("--growth-floor-mb", type=float, default=150.0, help="floor: RSS after phase A minus RSS after "
                                                                        "the first call (default: 150)")
    p.add_argument("--trend-floor-mb", type=float, default=50.0, help="floor: RSS after phase B minus RSS after A "
                                                                      "(default: 50 = 200 sessions x 0.21 MB + "
                                                                      "noise)")
    p.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra environment for both servers, e.g. MALLOC_ARENA_MAX=2 (default: none)")
    p.add_argument("--skip-batch", action="store_true", help="skip phases A and B (only the mix and the cache)")
    p.add_argument("--skip-mix", action="store_true", help="skip the mix phase and the cache measure")
    p.add_argument("--data", default=os.environ.get("NAMECLS_DATA_DIR") or str(ROOT.parent / "shared/data/names"),
                   help="folder of <Language>.txt name lists (default: $NAMECLS_DATA_DIR or ../shared/data/names)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (server logs, caches) afterwards")
    t = p.add_argument_group("time-boxed soak (--minutes): one mix server, fresh sessions for N minutes, the RSS curve")
    t.add_argument("--minutes", type=float, help="run only the time-boxed soak for this many minutes: a steady stream "
                                                 "of fresh sessions (each /predict, /predict_details, /trace, "
                                                 "/predict_batch, /ui_trace and 2 x /ui_next, every other one a "
                                                 "/ui_batch upload) on one server started with --serve; prints the "
                                                 "RSS curve and the plateau verdict over its second half (phases "
                                                 "A, B and the mix are skipped)")
    t.add_argument("--timed-clients", type=int, default=8, help="concurrent clients in --minutes (default: 8)")
    t.add_argument("--session-names", type=int, default=300, help="names in each session's /predict_batch call in "
                                                                  "--minutes (default: 300)")
    t.add_argument("--curve-seconds", type=float, default=15.0, help="RSS curve sampling period in --minutes "
                                                                     "(default: 15)")
    t.add_argument("--idle-seconds", type=float, default=60.0, help="after the stream, keep sampling the idle server "
                                                                    "this long (not in the fit; default: 60)")
    t.add_argument("--plateau-floor-mb", type=float, default=10.0, help="floor: PASS when the second half's RSS "
                                                                        "slope, MB per 10 min, is below this or its "
                                                                        "95%% interval includes 0 (default: 10)")
    t.add_argument("--curve-csv", metavar="PATH", help="also write the curve (every sample) as CSV here "
                                                       "(default: none)")
    t.add_argument("--diagnostics", type=float, nargs="?", const=60.0, default=0.0, metavar="SECONDS",
                   help="the --serve server logs what it holds (gradio's sessions, queue dicts, temp-file sets, "
                        "trained models, gc objects by type, glibc heap) every SECONDS (default 60 when given); "
                        "the report tabulates it and says what grew after the session cap filled (default: off)")
    t.add_argument("--session-capacity", type=int, default=0, metavar="N",
                   help="serve with this session cap instead of the app's (namecls.ui.server.SESSION_CAPACITY): "
                        "a short run then goes far past it, to see what grows past the cap (default: the app's)")
    t.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                   help="with --diagnostics, run tracemalloc in the server (FRAMES deep) and report the allocation "
                        "sites that grew most (slow, inflates RSS: not for the curve; default: off)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.port)
        return
    if args.minutes is not None:
        timed(args)
        return

    import torch

    torch.set_num_threads(1)  # the servers compute each request on one torch thread: same numbers
    sys.path.insert(0, str(ROOT))
    from gradio_client import handle_file

    from namecls.serving import service
    from namecls.ui.tabs.batch import batch_table

    began_run = time.monotonic()
    print(f"# bench/soak.py, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    print(f"settings: {' '.join(a for a in sys.argv[1:]) or '(defaults)'}; names {args.names:,}, sessions "
          f"{args.sessions} + {args.sessions} at {args.clients} clients, mix {args.mix_sessions} sessions at "
          f"{args.mix_clients} clients, cache interval {args.cache_seconds} s\n", flush=True)

    models = service.load_models(None)
    names = load_names(Path(args.data), args.names)
    reference = {}
    t0 = time.perf_counter()
    for model in ("gru", "rnn"):
        reference[("batch", model)] = canonical(service.predict_batch(models, names, model, K))
    pool = load_names(Path(args.data), 64, seed=1)
    for name, model in itertools.product(pool, ("gru", "rnn")):
        reference[("predict", name, model)] = canonical(service.predict(models, name, model, K))
        reference[("trace", name, model)] = canonical(service.trace(models, name, model))
    uploads = []  # 8 distinct files' names and their tables
    for j in range(8):
        chunk = names[j * 997 % len(names):][:args.upload_names] or names[:args.upload_names]
        uploads.append(chunk)
        for model in ("gru", "rnn"):
            table = batch_table(service.predict_batch(models, chunk, model, K))
            reference[("ui_batch", j, model)] = canonical(json.loads(table.to_json(orient="values")))
    print(f"serial reference computed in-process in {time.perf_counter() - t0:.1f} s "
          f"({len(names):,} batch names x 2 models, {len(pool)} names x 2 models for /predict and /trace, "
          f"8 upload files x 2 models)\n", flush=True)

    work = Path(tempfile.mkdtemp(prefix="namecls-soak-"))
    cache, tmp = work / "gradio", work / "tmp"
    env = {"NAMECLS_CACHE_SECONDS": str(args.cache_seconds), "GRADIO_TEMP_DIR": str(cache), "TMPDIR": str(tmp),
           "NAMECLS_UPLOADS_PER_MINUTE": "100000",  # every client is 127.0.0.1: one upload bucket for all of them
           **({DIAG_ENV: str(args.diagnostics)} if args.diagnostics else {}),
           **dict(item.split("=", 1) for item in args.server_env)}
    rows, floors = [], []  # (phase, sessions, calls, wall, before, peak, after); (floor, figure, ok)
    tallies = {}

    def phase_row(name, sampler, proc, before, since, wall, sessions, calls):
        time.sleep(args.settle_seconds)
        after = rss_mb(proc)
        rows.append((name, sessions, calls, wall, before, sampler.peak(since), after))
        print(f"  {name}: {sessions} sessions in {wall:.0f} s; RSS {before:.0f} → peak {sampler.peak(since):.0f} → "
              f"{after:.0f} MB", flush=True)
        return after

    try:
        # ------------------------------------------------------------------ phases A and B: python app.py
        if not args.skip_batch:
            for folder in (cache, tmp):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
            proc, url = start([sys.executable, "app.py"], env, work / "app.log")
            sampler = Sampler(proc, args.sample_seconds)
            sampler.start()
            try:
                tally = tallies["batch"] = Tally()

                def batch_job(client, i):
                    model = ("gru", "rnn")[i % 2]
                    tally.call("/predict_batch", lambda: client.predict(names, model, K, api_name="/predict_batch"),
                               expected=reference[("batch", model)])

                print("## Phases A and B: `python app.py`, one /predict_batch per fresh session", flush=True)
                time.sleep(args.settle_seconds)
                idle = rss_mb(proc)
                since = time.monotonic()
                wall = run_sessions(url, 1, 1, batch_job, tally)
                first = phase_row("first call", sampler, proc, idle, since, wall, 1, 1)
                trend = {}
                for phase in ("A", "B"):
                    before, since, points = rss_mb(proc), time.monotonic(), trend.setdefault(phase, [])

                    def checkpoint(count, points=points):
                        if count % args.clients == 0 or count == args.sessions:
                            points.append((count, rss_mb(proc)))

                    wall = run_sessions(url, args.sessions, args.clients, batch_job, tally, on_done=checkpoint)
                    after = phase_row(f"phase {phase}", sampler, proc, before, since, wall, args.sessions,
                                      args.sessions)
                    trend[phase].append((args.sessions, after))
                    if phase == "A":
                        after_a = after
                after_b = after
                per100 = {ph: 100 * slope(pts) for ph, pts in trend.items()}
                floors.append((f"RSS after phase A − RSS after the first call ≤ {args.growth_floor_mb:g} MB",
                               f"{after_a:.0f} − {first:.0f} = {after_a - first:+.0f} MB",
                               after_a - first <= args.growth_floor_mb))
                floors.append((f"no upward trend over phase B: RSS after B − after A ≤ {args.trend_floor_mb:g} MB",
                               f"{after_b:.0f} − {after_a:.0f} = {after_b - after_a:+.0f} MB (slope within the phase "
                               f"{per100['B']:+.1f} MB per 100 sessions; phase A {per100['A']:+.1f})",
                               after_b - after_a <= args.trend_floor_mb))
            finally:
                sampler.stopped.set()
                stop_group(proc, timeout=20)

        # ------------------------------------------------------------------ mix: the app with UI events callable
        if not args.skip_mix:
            for folder in (cache, tmp):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
            proc, url = start([sys.executable, str(Path(__file__).resolve()), "--serve"], env, work / "serve.log")
            sampler = Sampler(proc, args.sample_seconds)
            sampler.start()
            try:
                tally = tallies["mix"] = Tally()
                files = []
                for j, chunk in enumerate(uploads):
                    path = work / f"upload-{j}.txt"
                    path.write_text("\n".join(chunk) + "\n", encoding="utf-8")
                    files.append(path)
                too_many = work / "too-many.txt"
                too_many.write_text("\n".join(load_names(Path(args.data), service.MAX_BATCH_NAMES + 1)) + "\n",
                                    encoding="utf-8")

                def mix_job(client, i):
                    name, model = pool[i % len(pool)], ("gru", "rnn")[i // len(pool) % 2]
                    tally.call("/predict", lambda: client.predict(name, model, K, api_name="/predict"),
                               expected=reference[("predict", name, model)])
                    tally.call("/trace", lambda: client.predict(name, model, api_name="/trace"),
                               expected=reference[("trace", name, model)])
                    if i % 2 == 0:
                        j = i // 2 % len(files)

                        def check(answer, j=j, model=model):
                            summary, table, download = answer
                            got = canonical(table["data"])
                            want = reference[("ui_batch", j, model)]
                            if got != want:
                                return f"table differs: got {got[:100]}… expected {want[:100]}…"
                            if f"**{len(uploads[j]):,}** names" not in summary or not download:
                                return f"summary or download missing: {summary[:100]!r}, {str(download)[:80]}"
                            return None

                        tally.call("/ui_batch (upload)", lambda: client.predict(
                            handle_file(str(files[j])), "", model, "lists", api_name="/ui_batch"), check=check)
                    if args.bad_every and i % args.bad_every == args.bad_every - 1:
                        tally.call("/predict (empty name)", lambda: client.predict("", model, K,
                                                                                   api_name="/predict"),
                                   refusal=True)
                        tally.call("/ui_batch (10,001 names)", lambda: client.predict(
                            handle_file(str(too_many)), "", model, "lists", api_name="/ui_batch"), refusal=True)

                print("\n## Mix: /predict, /trace, /ui_batch uploads (the app with UI events callable)", flush=True)
                time.sleep(args.settle_seconds)
                cache_before = walk(cache)
                export_before = walk(tmp)
                before, since = rss_mb(proc), time.monotonic()
                mix_started = time.time()
                wall = run_sessions(url, args.mix_sessions, args.mix_clients, mix_job, tally)
                mix_ended = time.time()
                phase_row("mix", sampler, proc, before, since, wall, args.mix_sessions,
                          sum(tally.calls.values()))
                cache_after = walk(cache)
                export_after = walk(tmp)
                # Wait past the cleanup: a file made just after a sweep goes at the sweep after next (≤ 2 periods).
                deadline = mix_ended + 2 * args.cache_seconds + 5
                cache_series = [(0.0, describe(cache_after, cache))]
                while time.time() < deadline:
                    time.sleep(min(5.0, max(0.0, deadline - time.time())))
                    cache_series.append((time.time() - mix_ended, describe(walk(cache), cache)))
                cache_waited = walk(cache)
                now = time.time()
                # Uploads and results live in <cache>/<sha256>/<file>; anything else the soak left is listed apart.
                made = {p: v for p, v in cache_waited.items() if p not in cache_before}
                kept = {p: v for p, v in made.items() if Path(p).parent != cache}
                other = {p: v for p, v in made.items() if Path(p).parent == cache}
                stale = {p: v for p, v in kept.items() if now - v[1] > args.cache_seconds}
                made_during = {p: v for p, v in cache_after.items() if p not in cache_before}
                oldest = max((now - c for _, c in kept.values()), default=0.0)
                folders_left = sum(1 for d in cache.iterdir() if d.is_dir())
                floors.append((f"gradio cache, {now - mix_ended:.0f} s after the mix: no upload/result older than "
                               f"the {args.cache_seconds} s interval remains",
                               f"{len(stale)} stale of {len(kept)} uploads/results left (oldest {oldest:.0f} s); "
                               f"{len(made_during):,} soak files were on disk at the end of the mix",
                               not stale))
                other_old = {p: v for p, v in other.items() if now - v[1] > args.cache_seconds}
                floors.append(("gradio cache: nothing else the soak made stays past the interval",
                               f"{len(other_old):,} other files ({sum(b for b, _ in other_old.values()):,} bytes, "
                               f"e.g. {Path(next(iter(other_old), '-')).name}) and {folders_left:,} emptied "
                               f"<sha256> folders remain", not other_old))
                rss_cache = rss_mb(proc)
            finally:
                sampler.stopped.set()
                stop_group(proc, timeout=20)

        # ------------------------------------------------------------------ report
        print(f"\n## Report ({(time.monotonic() - began_run) / 60:.1f} min)\n")
        if rows:
            print("| phase | sessions | calls | wall s | RSS before MB | RSS peak MB | RSS after MB (settled) |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for name, sessions, calls, wall, before, peak, after in rows:
                print(f"| {name} | {sessions} | {calls:,} | {wall:.0f} | {before:.0f} | {peak:.0f} | {after:.0f} |")
            if not args.skip_batch:
                print(f"\nPhases A and B: RSS after the first call {first:.0f} MB, after A {after_a:.0f} MB, after B "
                      f"{after_b:.0f} MB; B − A = {after_b - after_a:+.0f} MB; A − first = {after_a - first:+.0f} MB. "
                      f"Slope of the RSS read every {args.clients} sessions: A {per100['A']:+.1f}, B "
                      f"{per100['B']:+.1f} MB per 100 sessions.")
            if not args.skip_mix:
                print(f"Mix server RSS {rss_cache:.0f} MB after the cache wait.")
        if not args.skip_mix:
            print("\n| gradio cache (GRADIO_TEMP_DIR) | on disk |\n|---|---|")
            print(f"| before the mix | {describe(cache_before, cache)} |")
            print(f"| end of the mix ({(mix_ended - mix_started):.0f} s of uploads) | {describe(cache_after, cache)} |")
            for seconds, text in cache_series[1:]:
                print(f"| {seconds:.0f} s after the mix | {text} |")
            print(f"\nCSV exports (service.write_csv in TMPDIR, kept 1 h, outside gradio's cache): before "
                  f"{describe(export_before)}, end of the mix {describe(export_after)}, after the wait "
                  f"{describe(walk(tmp))}.")
        report_tallies(tallies, floors)
    finally:
        if args.keep:
            print(f"\n(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
