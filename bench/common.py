"""What the benchmark scripts share: the project root, the offline environment, the machine line, a free port."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
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
