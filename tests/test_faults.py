"""Faults: broken checkpoints at app start-up, interrupted training, and 32 threads on one classifier.

- ``python app.py`` with ``NAMECLS_CHECKPOINTS`` pointing at a missing folder, truncated weights, or a config.json
  that disagrees with the weights exits non-zero, without a traceback, before serving, with a message that names
  the file and the fix (restore or retrain).
- Killing ``train.py`` mid-run (SIGKILL, and Ctrl-C) leaves the checkpoint already in its output folder intact,
  byte for byte, and loadable.
- 32 threads calling ``predict``, ``trace`` and ``predict_batch`` on one loaded classifier get exactly the serial
  results, also after ``torch.set_num_threads(1)`` (how app.py serves): fresh threads once computed their first
  answer with MKL's default thread count, a last-bit difference (fixed in ``namecls.inference._same_threads``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, TRAIN_PY, write_tiny_data

import namecls
from namecls import checkpoint

APP_PY = PROJECT_ROOT / "app.py"
START_TIMEOUT = 90  # seconds; a broken start fails in a few (torch import + reading the checkpoint)


def _env(**extra) -> dict:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])), **extra}
    return env


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------------------------------------------------------
# Broken checkpoints at start-up


def _truncate(folder: Path) -> Path:
    weights = folder / "gru" / checkpoint.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return weights


def _drop_a_label(folder: Path) -> Path:
    path = folder / "gru" / checkpoint.CONFIG_FILE
    config = json.loads(path.read_text())
    config["labels"] = config["labels"][:-1]
    path.write_text(json.dumps(config))
    return path


def _resize(folder: Path) -> Path:
    path = folder / "rnn" / checkpoint.CONFIG_FILE
    config = json.loads(path.read_text())
    config["model"]["hidden_size"] *= 2
    path.write_text(json.dumps(config))
    return folder / "rnn" / checkpoint.WEIGHTS_FILE  # the message names the weights that do not fit


def _missing_folder(folder: Path) -> Path:
    shutil.rmtree(folder / "gru")
    return folder / "gru"


BREAKAGES = {"missing folder": _missing_folder, "truncated weights": _truncate, "labels disagree": _drop_a_label,
             "hidden size disagrees": _resize}


@pytest.fixture(scope="module")
def broken_starts(dry_run_dir, tmp_path_factory):
    """Start ``python app.py`` once per breakage, all at once; {breakage: (named path, result, seconds)}."""
    runs = {}
    for i, (label, breakage) in enumerate(BREAKAGES.items()):
        folder = tmp_path_factory.mktemp(f"broken{i}")
        for kind in ("rnn", "gru"):
            shutil.copytree(dry_run_dir / kind, folder / kind)
        named = breakage(folder)
        env = _env(NAMECLS_CHECKPOINTS=str(folder), GRADIO_SERVER_NAME="127.0.0.1",
                   GRADIO_SERVER_PORT=str(7990 + i))
        proc = subprocess.Popen([sys.executable, str(APP_PY)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        runs[label] = (named, proc, time.perf_counter())
    results = {}
    for label, (named, proc, start) in runs.items():
        try:
            out, err = proc.communicate(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[label] = (named, proc.returncode, out, err, time.perf_counter() - start)
    return results


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_app_start_fails_fast_naming_the_file_and_the_fix(broken_starts, breakage):
    named, returncode, out, err, seconds = broken_starts[breakage]
    assert returncode not in (0, None), f"app.py started on a broken checkpoint ({breakage}):\n{out}\n{err}"
    assert "Running on" not in out  # never served
    assert "Traceback" not in err, err
    assert str(named) in err, f"the message should name {named}:\n{err}"
    assert re.search(r"(?i)restore", err) and re.search(r"(?i)retrain", err), err
    assert seconds < START_TIMEOUT


# ---------------------------------------------------------------------------------------------------------------
# Interrupted training


def _start_training(data: Path, out: Path) -> subprocess.Popen:
    # A slow enough run to be caught mid-epoch: batch size 1 (~100 steps an epoch), 30 epochs.
    args = [sys.executable, str(TRAIN_PY), "--data-dir", str(data), "--out", str(out), "--model", "gru",
            "--epochs", "30", "--batch-size", "1", "--hidden-size", "32", "--layers", "1", "--threads", "1",
            "--no-progress", "--seed", "1"]
    return subprocess.Popen(args, cwd=PROJECT_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)


def _wait_for_epoch(proc: subprocess.Popen, lines: list[str], timeout: float = 120) -> None:
    """Read the log until the first epoch line (training has begun epoch 2); fail if the run ends first."""
    deadline = time.monotonic() + timeout

    def read():
        for line in proc.stdout:
            lines.append(line)
            if re.match(r"\s*epoch\s+1\b", line):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    assert any(re.match(r"\s*epoch\s+1\b", line) for line in lines), "no epoch line:\n" + "".join(lines)
    assert proc.poll() is None, "training finished before it could be interrupted:\n" + "".join(lines)


@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["SIGKILL"])  # Ctrl-C (SIGINT) ends it the same way
def test_interrupted_training_leaves_the_previous_checkpoint_intact(dry_run_dir, tmp_path, sig):
    data = write_tiny_data(tmp_path / "names")
    out = tmp_path / "checkpoints"
    shutil.copytree(dry_run_dir / "gru", out / "gru")
    before = _digests(out / "gru")
    reference = namecls.load(out / "gru").predict("Nguyen", 18)

    proc = _start_training(data, out)
    lines: list[str] = []
    try:
        _wait_for_epoch(proc, lines)
        proc.send_signal(sig)  # mid-epoch 2 of 30
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not any("saved to" in line for line in lines)
    assert _digests(out / "gru") == before  # byte for byte, and no temporary files left behind
    assert namecls.load(out / "gru").predict("Nguyen", 18) == reference


def test_a_crash_while_writing_weights_keeps_the_old_ones(dry_run_dir, tmp_path, monkeypatch):
    """checkpoint.save over a good checkpoint, dying half-way through writing model.safetensors."""
    folder = tmp_path / "gru"
    shutil.copytree(dry_run_dir / "gru", folder)
    before = _digests(folder)
    model, config, metrics = checkpoint.load(folder)

    def dying_save_file(tensors, path):
        Path(path).write_bytes(b"\x00" * 100)  # a partial file, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", dying_save_file)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(folder, model, config["labels"], {}, metrics)
    assert _digests(folder) == before
    assert namecls.load(folder).predict("Qin", 3)


# ---------------------------------------------------------------------------------------------------------------
# Concurrency

CONCURRENT_NAMES = ["Nguyen", "Qin", "Slaveya", "Demirkan", "Ślusàrski", "O'Neill", "Papadopoulos", "Kowalski",
                    "Yamamoto", "van der Berg", "Dvořák", "Ó Briain"]


@pytest.fixture(scope="module")
def loaded():
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


@pytest.fixture(params=[1, 2], ids=["1 torch thread", "2 torch threads"])
def torch_threads(request):
    """The serving setting (app.py: one torch thread) and the default; the workers below are fresh threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def test_32_threads_get_exactly_the_serial_results(loaded, torch_threads):
    serial = {}
    for kind, clf in loaded.items():
        for name in CONCURRENT_NAMES:
            trace = clf.trace(name)
            serial[("predict", kind, name)] = clf.predict(name, 18)
            serial[("trace", kind, name)] = (trace.probs.copy(), trace.layers.copy())
        serial[("batch", kind)] = clf.predict_batch(CONCURRENT_NAMES, 18, batch_size=7)
    tasks = [("predict", kind, name) for kind in loaded for name in CONCURRENT_NAMES]
    tasks += [("trace", kind, name) for kind in loaded for name in CONCURRENT_NAMES]
    tasks += [("batch", kind) for kind in loaded] * 2
    n_threads, rounds = 32, 1
    start = threading.Barrier(n_threads)

    def worker(i: int) -> list[str]:
        rng = np.random.default_rng(i)
        mismatches = []
        start.wait()
        for _ in range(rounds):
            for j in rng.permutation(len(tasks)):
                task = tasks[j]
                clf = loaded[task[1]]
                if task[0] == "predict":
                    same = clf.predict(task[2], 18) == serial[task]
                elif task[0] == "trace":
                    t = clf.trace(task[2])
                    same = (np.array_equal(t.probs, serial[task][0]) and np.array_equal(t.layers, serial[task][1]))
                else:
                    same = clf.predict_batch(CONCURRENT_NAMES, 18, batch_size=7) == serial[task]
                if not same:
                    mismatches.append(repr(task))
        return mismatches

    with ThreadPoolExecutor(n_threads) as pool:
        results = list(pool.map(worker, range(n_threads)))
    mismatches = [m for r in results for m in r]
    assert not mismatches, f"{len(mismatches)} answers differ from the serial ones, e.g. {mismatches[:5]}"
