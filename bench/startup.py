"""Start-up: seconds from ``python app.py`` to the first successful ``/predict``, and the server's resident memory.

Each repeat starts a fresh ``python app.py`` on a free port, polls ``/predict`` with ``gradio_client`` until it
answers, records the elapsed seconds (and when the port first accepted a connection), then the resident memory
(RSS) of the serving process after a few requests, and stops it. Medians over ``--repeats``.

    python bench/startup.py               # 5 repeats, the committed checkpoints
    python bench/startup.py --repeats 2   # a quick look
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import OFFLINE, ROOT, free_port, machine, stop_group

TARGET_SECONDS = 8.0


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def one_start(timeout: float, extra_env: dict) -> dict:
    import psutil
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, **OFFLINE, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), **extra_env}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    listening = None
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{proc.stderr.read()[-2000:]}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"no answer from /predict within {timeout:.0f} s")
            if listening is None and port_open(port):
                listening = time.perf_counter() - start
            if listening is not None:
                try:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                    answer = client.predict("Nguyen", "gru", 3, api_name="/predict")
                    if answer:
                        break
                except Exception:  # not ready yet (routes mounting)
                    pass
            time.sleep(0.05)
        first = time.perf_counter() - start
        for name in ("Qin", "O'Neill", "Schmidt"):  # a few more requests, then the memory of a warm server
            client.predict(name, "rnn", 3, api_name="/predict")
            client.predict(name, "gru", api_name="/trace")
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        return {"first_predict": first, "listening": listening, "rss_mb": rss}
    finally:
        stop_group(proc, timeout=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="fresh starts to time; medians are reported (default: 5)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up on a start after this many seconds")
    p.add_argument("--checkpoints", help="NAMECLS_CHECKPOINTS for the app (default: the committed checkpoints)")
    args = p.parse_args()
    extra = {"NAMECLS_CHECKPOINTS": str(Path(args.checkpoints).resolve())} if args.checkpoints else {}

    runs = []
    for r in range(args.repeats):
        runs.append(one_start(args.timeout, extra))
        print(f"start {r + 1}: port open after {runs[-1]['listening']:.2f} s, first /predict after "
              f"{runs[-1]['first_predict']:.2f} s, RSS {runs[-1]['rss_mb']:.0f} MB", flush=True)
    first = statistics.median(r["first_predict"] for r in runs)
    listening = statistics.median(r["listening"] for r in runs)
    rss = statistics.median(r["rss_mb"] for r in runs)
    print(f"\n# bench/startup.py, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}\n")
    print(f"| measure (median of {len(runs)} starts) | value | target |")
    print("|---|---:|---:|")
    print(f"| `python app.py` → port accepting connections | {listening:.2f} s | — |")
    print(f"| `python app.py` → first successful `/predict` | {first:.2f} s | ≤ {TARGET_SECONDS:g} s |")
    print(f"| resident memory of the serving process (after a few requests) | {rss:.0f} MB | — |")
    print(f"\nTarget (first /predict ≤ {TARGET_SECONDS:g} s): {'met' if first <= TARGET_SECONDS else 'MISSED'}")


if __name__ == "__main__":
    main()
