"""What the benchmark scripts share: the project root, the offline environment, the machine line, a free port,
starting and stopping a server, percentiles."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# No network from an app the benchmarks start, and matplotlib without a display.
OFFLINE = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "NO_PROXY": "localhost,127.0.0.1", "MPLBACKEND": "Agg"}
for _key, _value in OFFLINE.items():
    os.environ.setdefault(_key, _value)


def machine() -> str:
    """Cores, CPU model (from /proc/cpuinfo), Python, and the load average before the run: the header of a result."""
    model = "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}; load average before the run {load}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """Stop a process started with ``start_new_session=True`` and its children: SIGTERM, then SIGKILL after
    ``timeout`` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_server(cmd: list[str], env: dict, log_path: Path, ready, timeout: float, poll: float):
    """Start ``cmd`` in its own session (output to ``log_path``) and wait until ``ready()`` returns without
    raising, trying every ``poll`` seconds; return the process. Stops it and raises RuntimeError if it exits
    first or is not ready after ``timeout`` seconds."""
    with open(log_path, "w") as log:  # the server writes to its own copy of the file
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
        try:
            ready()
            return proc
        except Exception:
            time.sleep(poll)
    stop_group(proc, timeout=15)
    raise RuntimeError(f"server not answering after {timeout:.0f} s; see {log_path}")


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (nearest rank), NaN for none."""
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]
