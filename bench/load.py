"""Load: N concurrent gradio_client users of the served app, next to gradio's own floor (an echo endpoint).

For each server configuration (``--torch-threads`` x ``--concurrency-limit``) the script starts the app in a
subprocess (``app.build_demo(ui_visibility="undocumented")`` plus an API-only ``/echo`` endpoint that returns its
input, the same queue settings), computes the serial answer of every request with a single client, then for each
client count runs ``--repeats`` rounds of two phases:

1. *echo*: every client sends ``--requests`` ``/echo`` calls back to back: gradio's floor per round trip;
2. *mix*: every client (its own session) traces a name once through the UI's ``/ui_trace`` and then sends
   ``--requests`` requests cycling through ``/predict``, ``/echo``, ``/trace``, ``/predict``, a step change
   (``/ui_next``, the Step-through tab's Next button, which re-renders from the session's stored trace) and
   ``/echo`` again: the floor measured under the same load.

It prints p50 / p99 latency per endpoint (median over the repeats), throughput, the error count and the number of
answers that differ from the serial answer, and each endpoint's ratios to the echo floor of the same phase (the
echo p50). Targets at 16 clients: 0 errors, ``/predict`` p50 ≤ 1.2x and p99 ≤ 2x the echo floor.

    python bench/load.py                                   # 16 and 32 clients, the app's own settings
    python bench/load.py --torch-threads 1 2 --concurrency-limit 4 16   # tune: 4 server configurations
    python bench/load.py --clients 16 --requests 10 --repeats 1         # a quick look
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import OFFLINE, ROOT, free_port, machine, pct, start_server, stop_group

NAMES = ["Nguyen", "Qin", "Slaveya", "Fernando", "Demirkan", "Ślusàrski", "O'Neill", "Mike", "Schmidt", "Rossi",
         "Papadopoulos", "Kowalski", "Yamamoto", "Abadi", "MacDonald", "van der Berg"]
SESSIONS = [("Nguyen", "gru"), ("O'Neill", "rnn"), ("Kowalski", "gru"), ("Yamamoto", "rnn")]  # step-change users
MIX = ["predict", "echo", "trace", "predict", "step", "echo"]
K = 3


# ---------------------------------------------------------------------------------------------------------------
# The server (a subprocess running this file with --serve)


def echo(text: str) -> str:
    """Return the input unchanged: gradio's own cost of a round trip."""
    return text


def serve(port: int, torch_threads: int, concurrency_limit: int | None) -> None:
    import torch

    torch.set_num_threads(torch_threads)
    sys.path.insert(0, str(ROOT))
    import gradio as gr

    import app

    demo = app.build_demo(ui_visibility="undocumented")
    with demo:
        gr.api(echo, api_name="echo")
    if concurrency_limit is not None:
        demo.queue(default_concurrency_limit=concurrency_limit)
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_kwargs())


# ---------------------------------------------------------------------------------------------------------------
# The clients


def start_app(torch_threads: int, concurrency_limit: int | None, log_path: Path, timeout: float = 180):
    from gradio_client import Client

    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port),
           "--torch-threads", str(torch_threads)]
    if concurrency_limit is not None:
        cmd += ["--concurrency-limit", str(concurrency_limit)]
    url = f"http://127.0.0.1:{port}/"
    proc = start_server(cmd, {**os.environ, **OFFLINE}, log_path,
                        lambda: Client(url, verbose=False).predict("x", api_name="/echo"), timeout, poll=0.2)
    return proc, url


def diff(got: str, expected: str) -> str:
    """Where two answers first differ (for the report)."""
    i = next((j for j, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    return f"at {i}: got ...{got[max(0, i - 60):i + 60]!r}... expected ...{expected[max(0, i - 60):i + 60]!r}..."


def canonical(value) -> str:
    """A comparable form of an answer (floats kept exactly)."""
    return json.dumps(value, sort_keys=True, default=str)


def request(client, op: str, i: int, session: tuple[str, str], answers: dict):
    """(endpoint, key of the serial answer, callable) of a client's i-th request."""
    name, model = NAMES[i % len(NAMES)], ("gru", "rnn")[i // len(NAMES) % 2]
    if op == "echo":
        return "/echo", ("echo", name), lambda: client.predict(name, api_name="/echo")
    if op == "predict":
        return "/predict", ("predict", name, model), lambda: client.predict(name, model, K, api_name="/predict")
    if op == "trace":
        return "/trace", ("trace", name, model), lambda: client.predict(name, model, api_name="/trace")
    length = answers[("length", *session)]
    position = 1 + i % length
    return "/ui_next (step)", ("step", *session, position), lambda: client.predict(position, K, api_name="/ui_next")


def serial_answers(url: str) -> dict:
    """Every answer the mix can get, computed one request at a time."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    answers = {}
    for name, model in itertools.product(NAMES, ("gru", "rnn")):
        answers[("echo", name)] = canonical(name)
        answers[("predict", name, model)] = canonical(client.predict(name, model, K, api_name="/predict"))
        answers[("trace", name, model)] = canonical(client.predict(name, model, api_name="/trace"))
    for session in SESSIONS:
        traced = client.predict(*session, K, "lists", api_name="/ui_trace")
        length = answers[("length", *session)] = len(json.loads(answers[("trace", *session)])["chars"])
        answers[("ui_trace", *session)] = canonical(traced[1:])  # [0] is the slider update
        for position in range(1, length + 1):
            answers[("step", *session, position)] = canonical(client.predict(position, K, api_name="/ui_next"))
    return answers


def run_phase(url: str, n_clients: int, n_requests: int, phase: str, answers: dict) -> dict:
    """Run one phase with n_clients threads; return per-endpoint latencies, errors, wrong answers, wall time."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(n_clients)]
    results = {"latency": {}, "errors": 0, "wrong": 0, "requests": 0, "error_samples": []}
    lock = threading.Lock()
    ready = threading.Barrier(n_clients + 1)

    def user(c: int) -> None:
        client = clients[c]
        session = SESSIONS[c % len(SESSIONS)]
        local, errors, wrong, samples = {}, 0, 0, []
        try:
            if phase == "mix":  # this user's own trace in its session: what step changes re-render from
                traced = client.predict(*session, K, "lists", api_name="/ui_trace")
                if canonical(traced[1:]) != answers[("ui_trace", *session)]:
                    wrong += 1
                    samples.append(f"wrong answer: /ui_trace {session}: "
                                   f"{diff(canonical(traced[1:]), answers[('ui_trace', *session)])}")
        except Exception as err:
            errors += 1
            samples.append(f"error: /ui_trace: {err!r}"[:300])
        ready.wait()
        for i in range(n_requests):
            if phase == "echo":
                text = f"{NAMES[(i + c) % len(NAMES)]}-{c}-{i}"
                endpoint, key, call = "/echo", None, (lambda t=text: client.predict(t, api_name="/echo"))
            else:
                endpoint, key, call = request(client, MIX[(i + c) % len(MIX)], i + 3 * c, session, answers)
            start = time.perf_counter()
            try:
                answer = call()
            except Exception as err:
                errors += 1
                samples.append(f"error: {endpoint}: {err!r}"[:300])
                continue
            local.setdefault(endpoint, []).append(time.perf_counter() - start)
            expected = text if phase == "echo" else answers[key]
            got = answer if phase == "echo" else canonical(answer)
            if got != expected:
                wrong += 1
                samples.append(f"wrong answer: {endpoint} {key}: {diff(got, expected)}")
        with lock:
            for endpoint, seconds in local.items():
                results["latency"].setdefault(endpoint, []).extend(seconds)
            results["errors"] += errors
            results["wrong"] += wrong
            results["requests"] += n_requests
            results["error_samples"] += samples[:5]

    threads = [threading.Thread(target=user, args=(c,), daemon=True) for c in range(n_clients)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    results["wall"] = time.perf_counter() - start
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[16, 32], help="concurrent clients (default: 16 32)")
    p.add_argument("--requests", type=int, default=24, help="requests per client per phase (default: 24)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of (echo, mix) per client count; medians "
                                                          "reported (default: 3)")
    p.add_argument("--torch-threads", type=int, nargs="+", default=[1],
                   help="torch.set_num_threads of the server; several values: one server each (default: 1, "
                        "what app.py uses)")
    p.add_argument("--concurrency-limit", type=int, nargs="+", default=[0],
                   help="the queue's default_concurrency_limit; 0 keeps app.py's own (default: 0)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        limit = args.concurrency_limit[0] or None
        serve(args.port, args.torch_threads[0], limit)
        return

    print(f"# bench/load.py, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}; {args.requests} requests per client per phase, medians of {args.repeats} rounds\n")
    summary = []
    for threads, limit in itertools.product(args.torch_threads, args.concurrency_limit):
        config = f"torch threads {threads}, concurrency limit {limit or 'app default'}"
        log_path = Path(tempfile.gettempdir()) / f"namecls-load-server-{os.getpid()}-{threads}-{limit}.log"
        proc, url = start_app(threads, limit or None, log_path)
        try:
            answers = serial_answers(url)
            print(f"## {config}\n")
            print("| clients | phase | endpoint | requests | p50 ms | p99 ms | p50 / floor | p99 / floor | req/s "
                  "| errors | wrong answers |")
            print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for n in args.clients:
                rounds = {"echo": [], "mix": []}
                for _ in range(args.repeats):
                    for phase in ("echo", "mix"):
                        rounds[phase].append(run_phase(url, n, args.requests, phase, answers))
                ratios = {}
                for phase, runs in rounds.items():
                    floor = statistics.median(pct(r["latency"].get("/echo", []), 50) for r in runs)
                    rate = statistics.median(r["requests"] / r["wall"] for r in runs)
                    errors, wrong = sum(r["errors"] for r in runs), sum(r["wrong"] for r in runs)
                    endpoints = sorted({k for r in runs for k in r["latency"]}, key=lambda e: (e != "/echo", e))
                    for j, endpoint in enumerate(endpoints):
                        p50 = statistics.median(pct(r["latency"].get(endpoint, []), 50) for r in runs)
                        p99 = statistics.median(pct(r["latency"].get(endpoint, []), 99) for r in runs)
                        count = sum(len(r["latency"].get(endpoint, [])) for r in runs)
                        totals = [f"{rate:.1f}", str(errors), str(wrong)] if j == 0 else ["", "", ""]
                        print(f"| {n} | {phase} | {endpoint} | {count} | {1000 * p50:.1f} | {1000 * p99:.1f} | "
                              f"{p50 / floor:.2f} | {p99 / floor:.2f} | " + " | ".join(totals) + " |")
                        ratios[(phase, endpoint)] = (p50, p99)
                    for r in runs:
                        for sample in r["error_samples"][:3]:
                            print(f"<!-- {sample} -->")
                idle_floor = ratios[("echo", "/echo")][0]
                mix_floor = ratios[("mix", "/echo")][0]
                p50, p99 = ratios.get(("mix", "/predict"), (float("nan"), float("nan")))
                errors = sum(r["errors"] for runs in rounds.values() for r in runs)
                wrong = sum(r["wrong"] for runs in rounds.values() for r in runs)
                summary.append((config, n, p50 / mix_floor, p99 / mix_floor, p50 / idle_floor, p99 / idle_floor,
                                errors, wrong))
            print()
        finally:
            stop_group(proc, timeout=15)
    print("## Targets (/predict at 16 clients: 0 errors, p50 ≤ 1.2x and p99 ≤ 2x the echo floor)\n")
    print("Floor: the echo p50 in the same mix (same load); in brackets, against the echo-only phase.\n")
    for config, n, r50, r99, i50, i99, errors, wrong in summary:
        if n != 16:
            continue
        ok = errors == 0 and wrong == 0 and r50 <= 1.2 and r99 <= 2.0
        print(f"- {config}: p50 {r50:.2f}x ({i50:.2f}x), p99 {r99:.2f}x ({i99:.2f}x), {errors} errors, {wrong} wrong "
              f"answers: {'met' if ok else 'MISSED'}")

if __name__ == "__main__":
    main()
