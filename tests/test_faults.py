"""Faults: broken checkpoints at app start-up, interrupted training, and 32 threads on one classifier.

- ``python app.py`` with ``NAMECLS_CHECKPOINTS`` pointing at a missing folder, truncated weights, a config.json
  that disagrees with the weights, NaN weights, a temperature of 1e-300, a label that is a list, a config.json nested
  100,000 levels deep or of 64 MB exits non-zero, without a traceback, before serving, with its "cannot start"
  message that names the file and the fix (restore or retrain).
- A crash before any write step of ``checkpoint.save`` (each file, each fsync, the swap, the clean-up), as an
  exception or as a kill, leaves the complete old set or the complete new set, never a mix; a re-run completes.
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
from conftest import PROJECT_ROOT, TRAIN_PY, require, write_tiny_data

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


def _nan_weights(folder: Path) -> Path:
    from safetensors.torch import load_file, save_file

    weights = folder / "gru" / checkpoint.WEIGHTS_FILE
    tensors = load_file(weights)
    tensors["head.bias"][0] = float("nan")
    save_file(tensors, weights)
    return weights


def _edit_gru_config(edit):
    def breakage(folder: Path) -> Path:
        path = folder / "gru" / checkpoint.CONFIG_FILE
        path.write_text(edit(path.read_text()))
        return path
    return breakage


def _set(key, value_text):
    return lambda text: json.dumps({**json.loads(text), key: "__V__"}).replace('"__V__"', value_text)


BREAKAGES = {"missing folder": _missing_folder, "truncated weights": _truncate, "labels disagree": _drop_a_label,
             "hidden size disagrees": _resize, "NaN weights": _nan_weights,
             "temperature 1e-300": _edit_gru_config(_set("temperature", "1e-300")),
             "a label is a list": _edit_gru_config(
                 lambda text: json.dumps({**json.loads(text),
                                          "labels": [["Arabic"]] + json.loads(text)["labels"][1:]})),
             "config nested 100,000 deep": _edit_gru_config(_set("deep", "[" * 100_000 + "]" * 100_000)),
             "config of 64 MB": _edit_gru_config(_set("padding", '"' + "x" * (64 << 20) + '"'))}


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


@pytest.mark.slow
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_app_start_fails_fast_naming_the_file_and_the_fix(broken_starts, breakage):
    named, returncode, out, err, seconds = broken_starts[breakage]
    assert returncode not in (0, None), f"app.py started on a broken checkpoint ({breakage}):\n{out}\n{err}"
    assert "Running on" not in out  # never served
    assert "Traceback" not in err, err[-3000:]
    assert "cannot start" in err, err[-3000:]
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


@pytest.mark.slow
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

    monkeypatch.setattr(checkpoint.files, "save_file", dying_save_file)
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


@pytest.mark.slow
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


# ---------------------------------------------------------------------------------------------------------------
# A crash at every write step of checkpoint.save (issue 12): the folder holds the old set or the new set, never a mix


class _Crash(BaseException):
    """The injected crash (a BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it)."""


class _WriteSteps:
    """Wraps every call that changes the file system during ``checkpoint.save`` and crashes before the k-th.

    Counted: opening a file for writing, ``save_file``, ``fsync``, ``mkdir``, ``rename``/``replace``, ``unlink``/
    ``remove``/``rmdir``, ``rmtree`` (as one step) and ``checkpoint.swap.exchange``. ``dead=True`` models
    SIGKILL or a power cut: after the crash nothing else reaches the disk (every later step raises again), so no
    clean-up runs; ``dead=False`` models an exception: the clean-up code runs normally.
    """

    OS_CALLS = ("fsync", "mkdir", "rename", "replace", "unlink", "remove", "rmdir")

    def __init__(self, monkeypatch, crash_at: int | None = None, dead: bool = False):
        import builtins
        import io

        self.count, self.crash_at, self.dead, self.crashed, self.depth = 0, crash_at, dead, False, 0
        self.steps: list[str] = []
        for name in self.OS_CALLS:
            monkeypatch.setattr(os, name, self._wrap(f"os.{name}", getattr(os, name)))
        monkeypatch.setattr(shutil, "rmtree", self._wrap("rmtree", shutil.rmtree))
        monkeypatch.setattr(checkpoint.files, "save_file", self._wrap("save_file", checkpoint.files.save_file))
        monkeypatch.setattr(checkpoint.swap, "exchange", self._wrap("exchange", checkpoint.swap.exchange))
        for module in (builtins, io):
            real_open = module.open

            def opener(file, mode="r", *args, _real=real_open, **kwargs):
                if any(c in mode for c in "wax+"):
                    return self._step(f"open({Path(str(file)).name!r}, {mode!r})", _real, file, mode, *args,
                                      **kwargs)
                return _real(file, mode, *args, **kwargs)

            monkeypatch.setattr(module, "open", opener)

    def _wrap(self, label, real):
        def wrapped(*args, **kwargs):
            return self._step(label, real, *args, **kwargs)
        return wrapped

    def _step(self, label, real, *args, **kwargs):
        if self.depth:  # inside a counted step (rmtree's own unlinks): part of that step
            return real(*args, **kwargs)
        if self.crashed and self.dead:
            raise _Crash(f"dead: {label}")
        if not self.crashed and self.count == self.crash_at:
            self.crashed = True
            raise _Crash(f"crash before step {self.count}: {label}")
        self.count += 1
        self.steps.append(label)
        self.depth += 1
        try:
            return real(*args, **kwargs)
        finally:
            self.depth -= 1


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _live_set(target: Path) -> Path | None:
    """The folder ``namecls.load(target)`` reads: ``target``, or after a crash mid-swap the set put aside."""
    if target.is_dir():
        return target
    aside = sorted(p for p in target.parent.glob(target.name + ".old-*") if p.is_dir())
    assert len(aside) <= 1, aside
    return aside[0] if aside else None


@pytest.fixture(scope="module")
def crash_sets(dry_run_dir, tmp_path_factory):
    """(old set folder, save arguments of three new sets, their reference bytes) for the crash test."""
    import torch

    old = dry_run_dir / "gru"
    model, config, metrics = checkpoint.load(old)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # other weights, same shapes
    full = checkpoint.load_posthoc(old, config, metrics)
    extra = {k: config[k] for k in ("protocol", "split_seed", "data_fingerprint")}
    news = {"full set": (model, config["labels"], extra, {**metrics, "note": "new"}, full),
            "bare set": (model, config["labels"], extra, {"note": "new, no parts"}, None)}
    refs = {}
    for label, args in news.items():
        ref = tmp_path_factory.mktemp("ref") / "gru"
        checkpoint.save(ref, *args)
        refs[label] = _files(ref)
    return old, news, refs


@pytest.mark.slow
@pytest.mark.parametrize("start", ["over an old set", "into nothing"])
@pytest.mark.parametrize("new", ["full set", "bare set"])
@pytest.mark.parametrize("dead", [True, False], ids=["killed", "exception"])
@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_crash_at_every_write_step_of_save_leaves_the_old_set_or_the_new_set(crash_sets, tmp_path, monkeypatch,
                                                                                 start, new, dead, swap):
    """Crash before each write step in turn; then the folder (or, after a crash between the two renames, the set
    put aside beside it) loads as the complete old set or the complete new set, and a re-run completes cleanly.
    ``exchange``: the atomic directory swap (Linux); ``two renames``: the fallback everywhere else."""
    if swap == "exchange":
        require(getattr(checkpoint.swap, "_renameat2", None) is not None, "no renameat2 here")
    else:
        monkeypatch.setattr(checkpoint.swap, "_renameat2", None)
    old, news, refs = crash_sets
    args, new_files = news[new], refs[new]
    old_files = _files(old) if start == "over an old set" else None

    def fresh(i: int) -> Path:
        target = tmp_path / f"run{i}" / "gru"
        target.parent.mkdir()
        if old_files is not None:
            shutil.copytree(old, target)
        return target

    target = fresh(0)
    with monkeypatch.context() as m:
        counter = _WriteSteps(m)
        checkpoint.save(target, *args)
    steps = counter.steps
    assert len(steps) >= len(new_files) + 1, steps  # at least one write per file and the swap

    outcomes = set()
    for k in range(len(steps)):
        target = fresh(k + 1)
        with monkeypatch.context() as m:
            _WriteSteps(m, crash_at=k, dead=dead)
            with pytest.raises(_Crash):
                checkpoint.save(target, *args)
        where = f"crash before step {k} ({steps[k]}) of {steps}"
        live = _live_set(target)
        if live is None:
            assert old_files is None, where  # nothing was there, and nothing is yet
            with pytest.raises(namecls.CheckpointError):
                namecls.load(target)
            outcomes.add("nothing")
        else:
            files = _files(live)
            assert files in (old_files, new_files), f"{where}: a mix of sets: {sorted(files)}"
            outcomes.add("old" if files == old_files else "new")
            namecls.load(target).predict("Qin", 3)  # and it loads (recovering a set put aside)
        if not dead and live is not target:  # stopped before the swap, the clean-up ran: nothing else beside it
            assert sorted(p.name for p in target.parent.iterdir()) in ([], ["gru"]), where
        if not dead and old_files is not None and _files(target) == old_files:
            assert sorted(p.name for p in target.parent.iterdir()) == ["gru"], where
        checkpoint.save(target, *args)  # a re-run recovers and completes
        assert _files(target) == new_files, where
        assert sorted(p.name for p in target.parent.iterdir()) == ["gru"], where  # no stray folders
    assert outcomes == {"old" if old_files is not None else "nothing", "new"}, outcomes


def test_a_successful_save_leaves_no_temporary_folder(crash_sets, tmp_path):
    old, news, refs = crash_sets
    target = tmp_path / "gru"
    shutil.copytree(old, target)
    for label, args in news.items():
        checkpoint.save(target, *args)
        assert _files(target) == refs[label]
        assert [p.name for p in tmp_path.iterdir()] == ["gru"]
