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

Every answer is compared with a serial reference computed in this process with ``namecls.service`` on the same
names (0 differences expected). Errors are counted and split into clear ones (gradio_client's ``AppError`` with
the app's own message) and others. RSS is sampled every ``--sample-seconds`` by a thread (for the peaks), and read
``--settle-seconds`` after each phase (the sweeper drops gradio's stored copies of output values every 2 s).
A session is a ``gradio_client.Client`` with a new session hash (``reset_session``): what a fresh script sees.

    python bench/soak.py                            # the defaults: 10,000 names a batch, well over 10 min on 2 cores
    python bench/soak.py --names 2000               # what bench/README.md reports, about 8 min
    python bench/soak.py --sessions 20 --mix-sessions 40 --cache-seconds 10    # a quick look
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


def serve(port: int) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("NAMECLS_TORCH_THREADS") or 1))  # as app.py's __main__
    sys.path.insert(0, str(ROOT))
    import app

    demo = app.build_demo(ui_visibility="undocumented")
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_kwargs())


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
        except Exception as err:  # noqa: BLE001: every failure is counted and described
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


def run_sessions(url: str, n_sessions: int, n_clients: int, job, tally: Tally, on_done=None) -> float:
    """``n_sessions`` fresh sessions over ``n_clients`` threads; ``job(client, i)`` runs session i. Returns the
    wall time. ``on_done(count)`` runs after every finished session."""
    from gradio_client import Client

    counter = itertools.count()
    done = itertools.count(1)
    clients = [Client(url, verbose=False, download_files=False) for _ in range(n_clients)]

    def worker(client):
        while (i := next(counter)) < n_sessions:
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
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.port)
        return

    import torch

    torch.set_num_threads(1)  # the servers compute each request on one torch thread: same numbers
    sys.path.insert(0, str(ROOT))
    from gradio_client import handle_file

    from namecls import service
    from namecls.ui.batch import batch_table

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
                            handle_file(str(files[j])), "", model, api_name="/ui_batch"), check=check)
                    if args.bad_every and i % args.bad_every == args.bad_every - 1:
                        tally.call("/predict (empty name)", lambda: client.predict("", model, K,
                                                                                   api_name="/predict"),
                                   refusal=True)
                        tally.call("/ui_batch (10,001 names)", lambda: client.predict(
                            handle_file(str(too_many)), "", model, api_name="/ui_batch"), refusal=True)

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
        unclear = sum(len(t.unclear) + len(t.refusals_unclear) + len(t.refusals_missing) for t in tallies.values())
        wrong = sum(len(t.wrong) for t in tallies.values())
        floors.append(("errors: 0 on valid input; every refusal a clear message",
                       f"{errors} errors on valid input, {unclear} unclear or missing refusals",
                       errors == 0 and unclear == 0))
        floors.append(("answers that differ from the serial reference: 0", f"{wrong}", wrong == 0))
        print("\n## Floors\n")
        print("| floor | measured | |\n|---|---|---|")
        for floor, figure, ok in floors:
            print(f"| {floor} | {figure} | {verdict(ok)} |")
    finally:
        if args.keep:
            print(f"\n(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
