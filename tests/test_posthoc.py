"""The post-training step (namecls.training.posthoc, namecls.posthoc.parts): every fitted value survives a checkpoint
round trip, "seen in training" agrees with a scan of the training split, and train.py --help prints each model's real
defaults."""

import numpy as np
import pytest
import torch

import namecls
from namecls import checkpoint
from namecls.training import experiment
from namecls.posthoc import seen
from namecls.training import posthoc
from namecls.serving import service
from namecls.data.names import read_names
from namecls.inference import CHECKPOINTS
from namecls.data.splits import make_split

from conftest import require, run_train

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded


def _scan(names, targets, labels, text):
    """The languages of ``text`` in a training split, by looking at every row."""
    return [labels[c] for c in sorted({int(t) for n, t in zip(names, targets) if n == text})]


@pytest.mark.slow
def test_seen_as_matches_a_scan_of_the_training_split(names_data):
    require((CHECKPOINTS / "gru" / "training_names.json").is_file(), "checkpoints/gru has no training names")
    clf = namecls.load("gru")
    split = make_split(names_data, clf.config["protocol"], clf.config["split_seed"])
    train_names, train_targets = split.part("train")
    multi = [n for n in set(train_names) if len(_scan(train_names, train_targets, clf.labels, n)) > 1][:5]
    assert multi, "the training split has names with several languages"
    for text in train_names[::997] + multi:
        assert clf.seen_as(text) == _scan(train_names, train_targets, clf.labels, text)
    train_set = set(train_names)
    for part in ("val", "test"):  # grouped by name: none of them was a training name
        for text in split.part(part)[0][::101]:
            assert text not in train_set and clf.seen_as(text) == []
    assert len(clf.training_names) == len(train_set)
    assert clf.seen_as("Ślusàrski") == clf.seen_as("Slusarski")  # compared after normalisation
    details = service.predict_details({"gru": clf}, train_names[0], "gru")
    assert details["seen_as"] == _scan(train_names, train_targets, clf.labels, train_names[0])
    assert service.trace({"gru": clf}, train_names[0], "gru")["seen_as"] == details["seen_as"]
    rows = service.predict_batch({"gru": clf}, [train_names[0], "Xqzvbt"], "gru")
    assert rows[0]["seen_as"] == details["seen_as"] and rows[1]["seen_as"] == []


def test_training_names_refuse_malformed_input():
    labels = ["A", "B"]
    table = seen.fit(["Li", "Li", "Wu"], [1, 0, 1], labels)
    assert table.seen_as("Li") == ["A", "B"] and table.seen_as("Wu") == ["B"] and table.seen_as("Xu") == []
    assert seen.TrainingNames.from_saved(None, table.summary, {"labels": labels}) == table
    with pytest.raises(ValueError):
        seen.TrainingNames(["Li", "Li"], [[0], [1]], labels)  # a name twice
    with pytest.raises(ValueError):
        seen.TrainingNames(["Li"], [[2]], labels)  # no such label
    with pytest.raises(ValueError, match="labels"):
        seen.TrainingNames.from_saved(None, table.summary, {"labels": ["B", "A"]})


@pytest.fixture(scope="module")
def fitted(dry_run_dir):
    """(model, labels, Posthoc) fitted in this process on the dry run's data and its GRU."""
    model, config, _ = checkpoint.load(dry_run_dir / "gru")
    data = read_names(dry_run_dir.parent / "names")
    split = make_split(data, config["protocol"], config["split_seed"])
    return model, config["labels"], posthoc.fit_on_split(model, config["labels"], split)


def test_every_posthoc_value_round_trips_through_a_checkpoint(fitted, tmp_path):
    model, labels, original = fitted
    checkpoint.save(tmp_path / "m", model, labels, {}, original.metrics, original)
    model2, config, metrics = checkpoint.load(tmp_path / "m")
    back = checkpoint.load_posthoc(tmp_path / "m", config, metrics)
    assert back.temperature == original.temperature and back.low_confidence == original.low_confidence
    np.testing.assert_array_equal(back.conformal.scores, original.conformal.scores)
    assert back.conformal.summary == original.conformal.summary
    assert back.training_names == original.training_names
    np.testing.assert_array_equal(back.projection.mean, original.projection.mean)
    np.testing.assert_array_equal(back.projection.components, original.projection.components)
    assert back.projection.summary == original.projection.summary
    for key, value in original.explain.tensors().items():
        assert torch.equal(back.explain.tensors()[key], value), key
    assert back.explain.summary == original.explain.summary
    if original.novelty is None:
        assert back.novelty is None
    else:
        assert back.novelty.summary == original.novelty.summary
        for key, value in original.novelty.tensors().items():
            assert torch.equal(back.novelty.tensors()[key], value), key
    assert back.metrics == original.metrics
    clf = namecls.load(tmp_path / "m")
    assert clf.predict_set("Balin") == [clf.labels[i] for i in original.conformal.sets(
        np.array([dict(clf.predict("Balin", len(labels)))[lang] for lang in labels]))[0]]


def test_saving_without_posthoc_removes_every_stale_part(fitted, tmp_path):
    model, labels, original = fitted
    folder = checkpoint.save(tmp_path / "m", model, labels, {}, original.metrics, original)
    checkpoint.save(folder, model, labels, {}, {})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    clf = namecls.load(folder)
    assert clf.conformal is None and clf.seen_as("Balin") is None and clf.predict_details("Balin").set is None
    with pytest.raises(ValueError, match="prediction-set"):
        clf.predict_set("Balin")


def test_a_corrupt_part_is_a_checkpoint_error(fitted, tmp_path):
    model, labels, original = fitted
    folder = checkpoint.save(tmp_path / "m", model, labels, {}, original.metrics, original)
    (folder / checkpoint.TRAINING_NAMES_JSON).write_text('{"names": ["Li"], "languages": [[0]]}')
    with pytest.raises(namecls.CheckpointError, match="training_names.json"):
        namecls.load(folder)
    (folder / checkpoint.TRAINING_NAMES_JSON).unlink()
    (folder / checkpoint.CONFORMAL_TENSORS).write_bytes(b"garbage")
    with pytest.raises(namecls.CheckpointError, match="conformal.safetensors"):
        namecls.load(folder)
    (folder / checkpoint.CONFORMAL_TENSORS).unlink()
    with pytest.raises(namecls.CheckpointError, match="missing"):
        namecls.load(folder)


def test_a_part_names_the_file_at_fault(fitted, tmp_path):
    """A readable tensors file that lacks what the part needs is blamed on itself, not on its JSON; a JSON that is
    not an object says so."""
    from safetensors.torch import save_file

    model, labels, original = fitted
    folder = checkpoint.save(tmp_path / "m", model, labels, {}, original.metrics, original)
    tensors = original.conformal.tensors()
    save_file({k: v for k, v in tensors.items() if k != "scores"}, folder / checkpoint.CONFORMAL_TENSORS)
    with pytest.raises(namecls.CheckpointError, match=r"conformal\.safetensors: .*no scores"):
        namecls.load(folder)
    save_file(tensors, folder / checkpoint.CONFORMAL_TENSORS)
    (folder / checkpoint.TRAINING_NAMES_JSON).write_text("[]")
    with pytest.raises(namecls.CheckpointError, match=r"training_names\.json: .*not a JSON object"):
        namecls.load(folder)


@pytest.mark.slow
def test_train_help_prints_each_models_real_defaults():
    result = run_train("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    # Read from the dataclasses here, not through the help's own formatter: each flag's help names both models' values.
    models, training = experiment.MODEL_DEFAULTS, experiment.TRAIN_DEFAULTS
    for flag, source, field in (("--lr", training, "lr"), ("--epochs", training, "epochs"),
                                ("--batch-size", training, "batch_size"), ("--hidden-size", models, "hidden_size")):
        rnn, gru = getattr(source["rnn"], field), getattr(source["gru"], field)
        expected = f"{rnn:g}" if rnn == gru else f"RNN {rnn:g}, GRU {gru:g}"
        assert f"(default: {expected})" in text.split(f"{flag} ", 2)[-1][:300], flag


@pytest.mark.parametrize("file_name", [checkpoint.CONFORMAL_TENSORS, checkpoint.PROJECTION_TENSORS,
                                       checkpoint.EXPLAIN_TENSORS, checkpoint.NOVELTY_TENSORS])
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_posthoc_tensors_are_a_checkpoint_error(dry_run_dir, tmp_path, file_name, value):
    """A NaN or inf in any floating tensor of a part's file is refused, naming the file and the tensor."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(dry_run_dir / "gru", tmp_path / "gru")
    path = folder / file_name
    require(path.is_file(), f"the dry run wrote no {file_name}")
    tensors = load_file(path)
    floating = sorted(k for k, v in tensors.items() if v.is_floating_point())
    assert floating, file_name
    for key in floating:
        damaged = dict(tensors)
        damaged[key] = tensors[key].clone()
        damaged[key].view(-1)[-1] = value
        save_file(damaged, path)
        with pytest.raises(namecls.CheckpointError) as info:
            namecls.load(folder)
        assert str(path) in str(info.value) and key in str(info.value), (key, str(info.value))


@pytest.mark.slow
@pytest.mark.parametrize("file_name", [checkpoint.TRAINING_NAMES_JSON, checkpoint.PROJECTION_JSON,
                                       checkpoint.EXPLAIN_JSON, checkpoint.CONFORMAL_JSON, checkpoint.NOVELTY_JSON])
@pytest.mark.parametrize("damage", ["deep", "large"])
def test_posthoc_json_too_deep_or_too_large_is_a_checkpoint_error(dry_run_dir, tmp_path, file_name, damage):
    import json
    import shutil

    folder = shutil.copytree(dry_run_dir / "gru", tmp_path / "gru")
    path = folder / file_name
    require(path.is_file(), f"the dry run wrote no {file_name}")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if damage == "deep":
        path.write_text(json.dumps(summary)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
                        encoding="utf-8")
    else:
        summary["padding"] = "x" * (checkpoint.JSON_MAX_BYTES[file_name] + 1)
        path.write_text(json.dumps(summary), encoding="utf-8")
    with pytest.raises(namecls.CheckpointError) as info:
        namecls.load(folder)
    assert str(path) in str(info.value)
