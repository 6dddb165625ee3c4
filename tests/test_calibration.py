"""Calibration (namecls.posthoc.calibration): temperature scaling, ECE and reliability bins, the low-confidence flag,
the
checkpoint fields, and the command that refits them on an existing checkpoint (python -m namecls.training.refit).

The last tests need the real committed checkpoints (``namecls.load("gru")``): they skip while the committed ones
are dry-run models (hidden size < 64), unless ``NAMECLS_CI=1``.
"""

import json
import math
import shutil

import numpy as np
import pytest
import torch

import namecls
from namecls.posthoc import calibration
from namecls.training import refit
from namecls.serving import service
from namecls.data.names import pad_batch
from namecls.training.evaluation import predict_logits
from conftest import IN_CI, require

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded


def synthetic(n=4000, classes=6, sharpen=3.0, seed=0):
    """Logits whose softmax is the true distribution the targets are drawn from, then made over-confident by
    ``sharpen`` (> 1) or under-confident (< 1): the NLL-optimal temperature is ``sharpen``."""
    rng = np.random.default_rng(seed)
    true = rng.normal(scale=2.0, size=(n, classes))
    p = calibration.softmax(true)
    targets = np.array([rng.choice(classes, p=row) for row in p])
    return sharpen * true, targets


# ---------------------------------------------------------------------------------------------------------------
# The numbers


def test_softmax_entropy_and_bins_basics():
    logits = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    p = calibration.softmax(logits)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(calibration.entropy(p)[0], math.log(3))
    assert calibration.entropy(p)[1] < 0.01
    np.testing.assert_allclose(calibration.softmax(logits, 2.0), calibration.softmax(logits / 2.0))
    bins = calibration.reliability(p, np.array([0, 0]))
    assert len(bins) == calibration.N_BINS == 15
    assert sum(b["count"] for b in bins) == 2
    assert bins[4]["count"] == 1 and bins[4]["lower"] == pytest.approx(4 / 15, abs=1e-6)  # 1/3 lands in (4/15, 5/15]
    assert bins[14]["count"] == 1 and bins[14]["accuracy"] == 1.0
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None  # an empty bin
    # ECE by hand: half the names in each of two bins; with targets 0 both are right (argmax takes the first tie).
    conf = p.max(axis=1)
    assert calibration.ece(p, np.array([0, 0])) == pytest.approx(0.5 * (1 - conf[0]) + 0.5 * (1 - conf[1]))
    assert calibration.ece(p, np.array([1, 1])) == pytest.approx(0.5 * conf[0] + 0.5 * conf[1])


@pytest.mark.parametrize("sharpen", [3.0, 0.4])
def test_temperature_recovers_the_distortion_and_lowers_ece(sharpen):
    logits, targets = synthetic(sharpen=sharpen)
    T = calibration.fit_temperature(logits, targets)
    assert T == pytest.approx(sharpen, rel=0.1)
    before, after = calibration.softmax(logits), calibration.softmax(logits, T)
    assert calibration.ece(after, targets) < calibration.ece(before, targets) / 2
    assert calibration.nll(logits, targets, T) < calibration.nll(logits, targets)
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))  # accuracy unchanged


def test_temperature_of_a_calibrated_model_stays_near_one_and_is_deterministic():
    logits, targets = synthetic(sharpen=1.0, seed=1)
    T = calibration.fit_temperature(logits, targets)
    assert T == pytest.approx(1.0, abs=0.1)
    assert calibration.fit_temperature(logits, targets) == T
    assert calibration.fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0


def test_threshold_rule_flags_names_that_are_right_at_most_half_the_time():
    logits, targets = synthetic(sharpen=1.0, seed=2)
    p = calibration.softmax(logits)
    rule = calibration.choose_threshold(p, targets)
    assert rule["score"] == "top_probability" and 0 < rule["threshold"] < 1
    flags = calibration.low_confidence(p, rule)
    correct = p.argmax(axis=1) == targets
    assert 0 < flags.mean() < 1
    assert correct[flags].mean() <= 0.5 < correct[~flags].mean()
    # Flags are monotone in the top probability, and a slightly higher threshold would break the rule.
    assert p.max(axis=1)[flags].max() < p.max(axis=1)[~flags].min()
    top = np.sort(p.max(axis=1))
    next_value = top[np.searchsorted(top, rule["threshold"])]
    wider = p.max(axis=1) <= next_value
    assert correct[wider].mean() > 0.5
    rates = calibration.flag_rates(p, targets, rule)
    assert rates["flag_rate"] == pytest.approx(flags.mean())
    assert rates["accuracy_flagged"] == pytest.approx(correct[flags].mean())
    # A single vector gives one flag; the entropy score is supported too.
    assert bool(calibration.low_confidence(np.full(4, 0.25), rule)) is True
    assert bool(calibration.low_confidence(np.full(4, 0.25), {"score": "entropy", "threshold": 1.0})) is True


def test_calibrate_reports_both_splits_before_and_after():
    val_logits, val_targets = synthetic(n=1500, sharpen=2.5, seed=3)
    test_logits, test_targets = synthetic(n=1500, sharpen=2.5, seed=4)
    config_fields, metrics_fields = calibration.calibrate(val_logits, val_targets, test_logits, test_targets)
    assert set(config_fields) == {"temperature", "low_confidence"}
    cal = metrics_fields["calibration"]
    assert cal["n_bins"] == 15 and cal["fitted_on"] == "validation"
    assert cal["validation"]["ece_after"] < cal["validation"]["ece_before"]
    assert cal["test"]["ece_after"] < cal["test"]["ece_before"]
    assert len(cal["test"]["reliability_before"]) == len(cal["test"]["reliability_after"]) == 15
    assert sum(b["count"] for b in cal["test"]["reliability_after"]) == 1500
    flag = metrics_fields["low_confidence"]
    assert flag["threshold"] == config_fields["low_confidence"]["threshold"]
    assert {"flag_rate", "accuracy_flagged", "accuracy_confident"} <= set(flag["test"])
    json.dumps(metrics_fields)  # JSON-able


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints and the Classifier


@pytest.mark.slow
def test_dry_run_checkpoint_is_calibrated_and_the_classifier_applies_it(dry_run_dir):
    for kind in ("rnn", "gru"):
        clf = namecls.load(dry_run_dir / kind)
        T = clf.config["temperature"]
        assert T == clf.metrics["calibration"]["temperature"] == clf.temperature > 0
        assert clf.low_confidence_rule["threshold"] == clf.metrics["low_confidence"]["threshold"]
        names = ["Balin", "Galion", "Baggins", "Gorbag"]
        x, lengths = pad_batch(names)
        with torch.inference_mode():
            logits = clf.model(x, lengths).numpy()
        expected = calibration.softmax(logits, T)
        for name, row, top in zip(names, expected, clf.predict_batch(names, k=4)):
            assert dict(top) == pytest.approx({clf.labels[i]: row[i] for i in range(4)}, abs=1e-5)
            assert dict(clf.predict(name, 4)) == pytest.approx(dict(top), abs=1e-6)
            trace = clf.trace(name)
            np.testing.assert_allclose(trace.probs[-1], row, atol=1e-5)  # the trace is calibrated too
            details = clf.predict_details(name, 2)
            assert [lang for lang, _ in details.top] == [lang for lang, _ in top[:2]]
            assert details.top_probability == pytest.approx(row.max(), abs=1e-5)
            assert details.entropy == pytest.approx(calibration.entropy(row), abs=1e-4)
            assert details.low_confidence == (row.max() < clf.low_confidence_rule["threshold"])
            np.testing.assert_allclose(trace.entropy, calibration.entropy(trace.probs), atol=1e-6)


def test_checkpoint_without_calibration_means_temperature_one(dry_run_dir, tmp_path):
    folder = shutil.copytree(dry_run_dir / "gru", tmp_path / "gru")
    config = json.loads((folder / "config.json").read_text())
    for key in ("temperature", "low_confidence"):
        config.pop(key)
    (folder / "config.json").write_text(json.dumps(config))
    clf = namecls.load(folder)
    assert clf.temperature == 1.0 and clf.low_confidence_rule == calibration.DEFAULT_RULE
    x, lengths = pad_batch(["Balin"])
    with torch.inference_mode():
        probs = torch.softmax(clf.model(x, lengths), dim=-1).numpy()[0]
    assert dict(clf.predict("Balin", 4)) == pytest.approx({clf.labels[i]: probs[i] for i in range(4)}, abs=1e-6)


@pytest.mark.parametrize("bad", [0, -1.5, "hot", True, None])
def test_a_bad_temperature_is_a_checkpoint_error(dry_run_dir, tmp_path, bad):
    folder = shutil.copytree(dry_run_dir / "rnn", tmp_path / "rnn")
    config = json.loads((folder / "config.json").read_text())
    config["temperature"] = bad
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(namecls.CheckpointError, match="temperature"):
        namecls.load(folder)


def test_service_predict_details(dry_run_dir):
    models = service.load_models(dry_run_dir)
    out = service.predict_details(models, "Balin", "gru", 2)
    assert list(out) == ["name", "normalized", "model", "top", "top_probability", "entropy", "low_confidence",
                         "threshold", "set", "coverage", "seen_as", "novelty", "unfamiliar", "prior"]
    assert out["top"] == pytest.approx(service.predict(models, "Balin", "gru", 2))
    assert out["top_probability"] == pytest.approx(next(iter(out["top"].values())))
    assert isinstance(out["low_confidence"], bool) and out["entropy"] >= 0
    json.dumps(out)
    with pytest.raises(ValueError):
        service.predict_details(models, "12345", "gru", 2)
    traced = service.trace(models, "Balin", "gru")
    assert len(traced["entropy"]) == 5 and isinstance(traced["low_confidence"], bool)
    assert traced["low_confidence"] == out["low_confidence"]
    # The novelty score: the checkpoint's Novelty run on the name by itself, and the same from the trace's state.
    clf = models["gru"]
    expected = float(clf.novelty.score_model(clf.model, ["Balin"])[0])
    assert out["novelty"] == pytest.approx(expected, abs=1e-6)
    assert traced["novelty"] == pytest.approx(expected, abs=1e-5)
    assert out["unfamiliar"] is (expected > clf.novelty.threshold) and traced["unfamiliar"] is out["unfamiliar"]


# ---------------------------------------------------------------------------------------------------------------
# Refitting calibration on an existing checkpoint


def test_calibrate_checkpoint_matches_training_and_is_idempotent(dry_run_dir, tmp_path):
    data_dir = dry_run_dir.parent / "names"
    folder = shutil.copytree(dry_run_dir / "gru", tmp_path / "gru")
    trained = json.loads((folder / "metrics.json").read_text())
    weights = (folder / "model.safetensors").read_bytes()
    for name in ("projection.json", "projection.safetensors"):
        (folder / name).unlink()
    config = json.loads((folder / "config.json").read_text())
    del config["temperature"], config["low_confidence"]
    (folder / "config.json").write_text(json.dumps(config))

    refit.main(["--checkpoint", str(folder), "--data-dir", str(data_dir), "--threads", "1"])
    first = {name: (folder / name).read_bytes() for name in ("config.json", "metrics.json", "projection.json",
                                                            "projection.safetensors")}
    metrics = json.loads(first["metrics.json"])
    # The same numbers as at training time (up to float noise: training ran in another process).
    for key in ("temperature", "validation", "test"):
        assert _close(metrics["calibration"][key], trained["calibration"][key]), key
    assert _close(metrics["low_confidence"], trained["low_confidence"])
    assert json.loads(first["config.json"])["temperature"] == metrics["calibration"]["temperature"]
    assert (folder / "model.safetensors").read_bytes() == weights  # weights untouched
    trained_map = json.loads((dry_run_dir / "gru" / "projection.json").read_text())
    assert _close(json.loads(first["projection.json"]), trained_map, tol=1e-3)

    refit.main(["--checkpoint", str(folder), "--data-dir", str(data_dir), "--threads", "1"])
    assert {name: (folder / name).read_bytes() for name in first} == first  # idempotent
    assert not list(folder.glob("*.tmp"))
    clf = namecls.load(folder)
    assert clf.temperature == trained["calibration"]["temperature"] and clf.projection is not None


def _close(a, b, tol=1e-5) -> bool:
    """Nested JSON values equal, numbers up to ``tol`` (relative or absolute)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return a == b


def test_calibrate_checkpoint_refuses_other_data(dry_run_dir, tmp_path):
    from conftest import write_tiny_data

    folder = shutil.copytree(dry_run_dir / "rnn", tmp_path / "rnn")
    other = write_tiny_data(tmp_path / "other")
    (other / "Orcish.txt").write_text("Gorbag\nUkbag\n")
    before = (folder / "config.json").read_bytes()
    with pytest.raises(SystemExit, match="not the data"):
        refit.main(["--checkpoint", str(folder), "--data-dir", str(other), "--threads", "1"])
    assert (folder / "config.json").read_bytes() == before


# ---------------------------------------------------------------------------------------------------------------
# The committed checkpoints (real models only)

# Names from none of the 18 languages, or no language at all: Turkish, Finnish, Hungarian, Swahili, Hindi
# surnames and random letter strings.
OUT_OF_LIST = [
    "Demirkan", "Yilmaz", "Ozturk", "Kaya", "Celik", "Aydin",  # Turkish
    "Virtanen", "Korhonen", "Makinen", "Nieminen", "Hamalainen", "Laaksonen",  # Finnish
    "Szabo", "Horvath", "Toth", "Farkas", "Balogh", "Molnar",  # Hungarian
    "Mwangi", "Otieno", "Wanjiku", "Kamau", "Njoroge",  # Swahili / Kenyan
    "Chaturvedi", "Srivastava", "Bhattacharya", "Mukherjee", "Agarwal",  # Hindi / Indian
    "Xqzvbt", "Plokmijn", "Zzyzx", "Qwghlm", "Vtrkpl",  # random strings
]


@pytest.fixture(scope="module")
def real_models():
    models = {kind: namecls.load(kind) for kind in ("rnn", "gru")}
    if models["gru"].config["model"]["hidden_size"] < 64 and not IN_CI:
        pytest.skip("the committed checkpoints are dry-run models (hidden size < 64)")
    for kind, clf in models.items():
        require("temperature" in clf.config and clf.projection is not None,
                f"checkpoints/{kind} is not calibrated: run python -m namecls.training.refit --checkpoint "
                f"checkpoints/{kind} --data-dir ../shared/data/names")
    return models


@pytest.fixture(scope="module")
def real_split(real_models, names_data):
    from namecls.data.splits import make_split

    config = real_models["gru"].config
    return make_split(names_data, config["protocol"], config["split_seed"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_real_calibration_lowers_validation_ece_and_keeps_accuracy(real_models, real_split, kind):
    clf = real_models[kind]
    names, targets = real_split.part("val")
    logits = predict_logits(clf.model, names)
    before, after = calibration.softmax(logits), calibration.softmax(logits, clf.temperature)
    assert calibration.ece(after, targets) < calibration.ece(before, targets)
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))
    # Recorded on another machine: a name whose confidence sits at a bin edge may fall in the next bin there,
    # which moves the ECE by at most 2/n; the rest moves in the 6th digit.
    assert clf.metrics["calibration"]["validation"]["ece_after"] == pytest.approx(calibration.ece(after, targets),
                                                                                abs=2 / len(targets) + 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_real_flag_fires_more_on_out_of_list_names_than_on_test_names(real_models, real_split, kind):
    clf = real_models[kind]
    names, _ = real_split.part("test")
    test_rate = float(np.mean([clf.is_low_confidence(p) for p in _calibrated(clf, names)]))
    outside = [clf.predict_details(name).low_confidence for name in OUT_OF_LIST]
    outside_rate = float(np.mean(outside))
    print(f"\n{kind}: flagged {100 * test_rate:.1f}% of test names, {100 * outside_rate:.1f}% of out-of-list names")
    assert outside_rate > test_rate


def _calibrated(clf, names):
    return calibration.softmax(predict_logits(clf.model, names), clf.temperature)
