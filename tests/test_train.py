"""train.py end to end on a tiny made-up data folder (``--dry-run`` only), and determinism across processes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import namecls
from namecls.data.names import read_names
from namecls.training.evaluation import predict_logits, score
from namecls.data.splits import make_split

from conftest import PROJECT_ROOT, run_train, tiny_names, without_timings, write_tiny_data

KINDS = ["rnn", "gru"]
FLAGS = ["--model", "--data-dir", "--download", "--protocol", "--seed", "--epochs", "--batch-size", "--lr",
         "--hidden-size", "--layers", "--out", "--dry-run"]


def _read(folder):
    return (json.loads((folder / "config.json").read_text(encoding="utf-8")),
            json.loads((folder / "metrics.json").read_text(encoding="utf-8")))


@pytest.mark.parametrize("kind", KINDS)
def test_dry_run_writes_a_complete_checkpoint(dry_run_dir, kind, tmp_path):
    folder = dry_run_dir / kind
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", "conformal.json", "conformal.safetensors", "explain.json", "explain.safetensors",
         "metrics.json", "model.safetensors", "projection.json", "projection.safetensors", "training_names.json",
         "novelty.json", "novelty.safetensors"])
    config, metrics = _read(folder)
    assert config["temperature"] == metrics["calibration"]["temperature"] > 0  # calibrated at training time
    assert config["low_confidence"]["threshold"] == metrics["low_confidence"]["threshold"]
    data = read_names(write_tiny_data(tmp_path / "names"))  # the same made-up names the dry run read
    assert config["labels"] == data.labels == sorted(tiny_names())
    assert config["alphabet"] == namecls.ALPHABET
    assert config["protocol"] == "clean" and config["split_seed"] == 0
    assert config["data_fingerprint"] == data.fingerprint
    assert config["model"]["kind"] == kind and config["model"]["num_classes"] == 4
    assert {"python", "torch", "numpy", "scikit-learn", "unidecode"} <= set(config["versions"])
    assert config["normalization"]

    test = metrics["test"]
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "top3_accuracy"):
        assert 0.0 <= test[key] <= 1.0
    assert set(test["per_language"]) == set(data.labels)
    for row in test["per_language"].values():
        assert {"precision", "recall", "f1", "support"} <= set(row)
    matrix = np.array(test["confusion_matrix"])
    assert matrix.shape == (4, 4)
    assert matrix.sum() == test["n"] == sum(r["support"] for r in test["per_language"].values())
    assert np.trace(matrix) / matrix.sum() == pytest.approx(test["accuracy"], abs=1e-12)
    assert metrics["split_sizes"] == {"train": 128, "val": 16, "test": 16}
    history = metrics["history"]
    assert len(history) == metrics["epochs_run"] >= 1
    assert {"epoch", "train_loss", "val_accuracy", "val_macro_f1", "seconds"} <= set(history[0])
    assert metrics["model"] == kind and metrics["protocol"] == "clean"


@pytest.mark.parametrize("kind", KINDS)
def test_dry_run_checkpoint_loads_and_its_metrics_are_reproducible(dry_run_dir, kind, tmp_path):
    clf = namecls.load(dry_run_dir / kind)
    assert clf.kind == kind and clf.labels == sorted(tiny_names())
    data = read_names(write_tiny_data(tmp_path / "names"))
    split = make_split(data, clf.config["protocol"], clf.config["split_seed"])
    names, targets = split.part("test")
    recomputed = score(targets, predict_logits(clf.model, names), data.labels)
    assert recomputed["accuracy"] == pytest.approx(clf.metrics["test"]["accuracy"], abs=1e-9)
    assert recomputed["confusion_matrix"] == clf.metrics["test"]["confusion_matrix"]
    assert len(clf.predict("Gimli", k=4)) == 4


@pytest.mark.slow
def test_same_seed_twice_gives_identical_metrics(dry_run_dir, tmp_path):
    """A second process, reading the data through NAMECLS_DATA_DIR, reproduces the first run exactly."""
    data = write_tiny_data(tmp_path / "names")
    out = tmp_path / "again"
    result = run_train("--out", str(out), "--dry-run", "--seed", "0", "--threads", "1", "--no-progress",
                       env={"NAMECLS_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    for kind in KINDS:
        config_a, metrics_a = _read(dry_run_dir / kind)
        config_b, metrics_b = _read(out / kind)
        assert without_timings(metrics_a) == without_timings(metrics_b)
        assert config_a == config_b
        a, b = namecls.load(dry_run_dir / kind).model.state_dict(), namecls.load(out / kind).model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_protocol_and_seed_flags(tmp_path):
    """In-process run: --model rnn writes only rnn/, and --protocol/--seed are recorded."""
    import train

    data = write_tiny_data(tmp_path / "names")
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        train.main(["--data-dir", str(data), "--out", str(out), "--dry-run", "--model", "rnn", "--protocol", "seed",
                    "--seed", "5", "--threads", "1", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in out.iterdir()) == ["rnn"]
    config, metrics = _read(out / "rnn")
    assert config["protocol"] == metrics["protocol"] == "seed"
    assert config["split_seed"] == metrics["split_seed"] == 5
    assert metrics["split_sizes"]["test"] == 16 and sum(metrics["split_sizes"].values()) == 160
    assert metrics["train_config"]["seed"] == 5


def test_help_documents_every_flag(monkeypatch, capsys):
    import train

    parsers = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        parsers.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit) as info:
        train.parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in text, flag
    (parser,) = parsers
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"{action.option_strings} has no help"
    assert {"rnn", "gru", "all"} <= set(next(a for a in parser._actions if "--model" in a.option_strings).choices)
    assert {"clean", "seed"} <= set(next(a for a in parser._actions if "--protocol" in a.option_strings).choices)


@pytest.mark.slow
def test_missing_data_dir_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = run_train("--data-dir", str(missing), "--dry-run", "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode != 0
    assert "--data-dir" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_default_data_dir_missing_is_a_clear_error(tmp_path, monkeypatch):
    """No --data-dir and no NAMECLS_DATA_DIR: none of the default places (data/names relative to the cwd, the folder
    beside the project, the download cache) holds the data."""
    import namecls.data.names
    import train

    monkeypatch.delenv("NAMECLS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(namecls.data.names, "PROJECT_ROOT", tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        train.main(["--dry-run", "--threads", str(torch.get_num_threads())])
    message = info.value.code
    assert isinstance(message, str)  # SystemExit(str): the interpreter prints it and exits with status 1
    assert "data/names" in message and "--data-dir" in message


def test_data_dir_default_comes_from_the_environment(tmp_path, monkeypatch):
    """train.py, refit and fit resolve a missing --data-dir alike (namecls.data.names.find_data): $NAMECLS_DATA_DIR,
    else data/names in the working directory, else the folder beside the project, else the download cache."""
    from pathlib import Path

    import namecls.data.names
    import train

    assert train.parse_args([]).data_dir is None  # resolved in main()
    data = write_tiny_data(tmp_path / "from-env")
    monkeypatch.setenv("NAMECLS_DATA_DIR", str(data))
    assert namecls.data.names.find_data() == data
    monkeypatch.delenv("NAMECLS_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(namecls.data.names, "PROJECT_ROOT", tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    write_tiny_data(tmp_path / "shared" / "data" / "names")
    assert namecls.data.names.default_data_dir() == (tmp_path / "shared" / "data" / "names",
                                                     "the default beside the project")
    write_tiny_data(tmp_path / "data" / "names")
    assert namecls.data.names.find_data() == Path("data/names")


def test_empty_data_dir_fails_and_says_what_to_do(tmp_path):
    import train

    (tmp_path / "empty").mkdir()
    with pytest.raises((SystemExit, FileNotFoundError), match="--data-dir"):
        train.main(["--data-dir", str(tmp_path / "empty"), "--dry-run", "--out", str(tmp_path / "out"),
                    "--threads", str(torch.get_num_threads())])


# --- determinism across processes ------------------------------------------------------------------------------

PROBE = """
import sys, namecls
for kind in ("rnn", "gru"):
    clf = namecls.load(sys.argv[1] + "/" + kind)
    for result in clf.predict_batch(["Gimli", "Legolas", "Иванов", "Baggins", "Azog"], k=4):
        print(kind, [(label, repr(p)) for label, p in result])
    print(kind, [repr(float(p)) for p in clf.trace("Thranduil").probs.ravel()])
"""


@pytest.mark.slow
def test_predictions_identical_across_processes(dry_run_dir):
    outputs = []
    for hash_seed in ("1", "2"):  # a different str-hash seed must not matter either
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(PROJECT_ROOT)}
        result = subprocess.run([sys.executable, "-c", PROBE, str(dry_run_dir)], env=env, capture_output=True,
                                text=True, timeout=90)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == 12  # 2 models x (5 names + 1 trace)
    in_process = namecls.load(dry_run_dir / "rnn").predict("Gimli", k=4)
    assert outputs[0].splitlines()[0] == "rnn " + str([(label, repr(p)) for label, p in in_process])


@pytest.mark.slow
def test_like_retrains_a_checkpoints_recipe(tmp_path):
    """--like FOLDER takes architecture and training settings from FOLDER/<model>/config.json: a run with it
    rebuilds the same model as the run that wrote FOLDER, not the defaults; flags still override."""
    import train

    data = write_tiny_data(tmp_path / "names")
    threads = torch.get_num_threads()
    common = ["--data-dir", str(data), "--model", "gru", "--threads", "1", "--no-progress"]
    try:
        train.main([*common, "--out", str(tmp_path / "first"), "--dry-run", "--lr", "0.02", "--batch-size", "7"])
        train.main([*common, "--out", str(tmp_path / "again"), "--like", str(tmp_path / "first")])
        train.main([*common, "--out", str(tmp_path / "wider"), "--like", str(tmp_path / "first"),
                    "--hidden-size", "20"])
    finally:
        torch.set_num_threads(threads)
    first, first_metrics = _read(tmp_path / "first" / "gru")
    again, again_metrics = _read(tmp_path / "again" / "gru")
    assert again["model"] == first["model"] and again["train_config"] == first["train_config"]
    assert first["train_config"]["lr"] == 0.02
    assert first["model"]["hidden_size"] != namecls.training.experiment.MODEL_DEFAULTS["gru"].hidden_size
    assert without_timings(again_metrics)["test"] == without_timings(first_metrics)["test"]
    wider, _ = _read(tmp_path / "wider" / "gru")
    assert wider["model"]["hidden_size"] == 20 and wider["train_config"] == first["train_config"]


def test_like_without_a_checkpoint_is_a_clear_error(tmp_path):
    import train

    with pytest.raises(SystemExit, match=r"--like: .*config.json: file is missing"):
        train.main(["--data-dir", str(write_tiny_data(tmp_path / "names")), "--dry-run", "--out",
                    str(tmp_path / "out"), "--like", str(tmp_path / "nowhere"), "--threads", "1"])
