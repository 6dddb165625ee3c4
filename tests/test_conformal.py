"""Prediction sets (namecls.posthoc.conformal), each checked against an independent computation: coverage on a synthetic
task whose truth is known, nested sets, the qhat formula by hand, and the committed checkpoints' test coverage
recomputed from the data."""

import json
import math

import numpy as np
import pytest

import namecls
from namecls.posthoc import calibration, conformal
from namecls.serving import service
from namecls.training.evaluation import predict_logits
from namecls.inference import CHECKPOINTS
from namecls.data.splits import make_split

from conftest import require

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded


def dirichlet_task(n, classes=10, concentration=0.5, seed=0):
    """Probabilities drawn from a Dirichlet, and labels drawn from them: the probabilities are the truth."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(classes, concentration), size=n)
    targets = (probs.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
    return probs, targets


def covered(sets, targets):
    return np.array([t in s for s, t in zip(sets, targets)])


@pytest.mark.slow
@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
@pytest.mark.parametrize("penalty", [0.0, 0.05])
def test_coverage_on_held_out_draws_of_a_known_distribution(coverage, penalty):
    rates = []
    for seed in range(20):
        cal_probs, cal_targets = dirichlet_task(500, seed=2 * seed)
        test_probs, test_targets = dirichlet_task(2000, seed=2 * seed + 1)
        fitted = conformal.fit(cal_probs, cal_targets, penalty=penalty)
        rates.append(covered(fitted.sets(test_probs, coverage), test_targets).mean())
    # Split conformal: E[coverage] in [coverage, coverage + 1/(n+1)]; each draw within a few points.
    assert coverage - 0.005 <= np.mean(rates) <= coverage + 1 / 501 + 0.01
    assert all(abs(r - coverage) < 0.05 for r in rates)


def test_sets_are_nested_in_the_coverage_prefixes_and_never_empty():
    probs, targets = dirichlet_task(400, seed=7)
    fitted = conformal.fit(probs[:200], targets[:200])
    levels = [0.5, 0.6, 0.8, 0.9, 0.95, 0.99]
    by_level = [fitted.sets(probs[200:], c) for c in levels]
    for smaller, larger in zip(by_level, by_level[1:]):
        for a, b in zip(smaller, larger):
            assert b[: len(a)] == a  # the larger set starts with the smaller one
    order = np.argsort(-probs[200:], axis=1, kind="stable")
    for sets in by_level:
        for s, row in zip(sets, order):
            assert 1 <= len(s) and s == row[: len(s)].tolist()  # most probable first, never empty


def test_qhat_by_hand():
    scores = np.sort(np.random.default_rng(0).random(19))
    # n = 19, coverage 0.9: ceil(20 * 0.9) = 18, the 18th smallest.
    assert conformal.qhat(scores, 0.9) == scores[17]
    # numpy: the smallest score whose empirical CDF reaches 18/19 ("inverted_cdf"; "higher" interpolates over n - 1)
    assert conformal.qhat(scores, 0.9) == np.quantile(scores, 18 / 19, method="inverted_cdf")
    # n = 9, coverage 0.9: ceil(10 * 0.9) = 9 = n, the largest; 0.95: ceil(9.5) = 10 > n, infinite.
    assert conformal.qhat(scores[:9], 0.9) == scores[8]
    assert conformal.qhat(scores[:9], 0.95) == math.inf
    fitted = conformal.fit(*dirichlet_task(9, seed=1), penalty=0.0)
    assert all(len(s) == 10 for s in fitted.sets(dirichlet_task(5, seed=2)[0], 0.95))  # every language


def test_a_score_at_the_threshold_stays_in_its_set_under_rounding():
    """The validation name whose score *is* the threshold keeps its right language in its set when its
    probabilities move in the 7th digit (another CPU), though the scores are stored in float32."""
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(6, 0.4), size=299)
    targets = np.array([rng.choice(6, p=p) for p in probs])
    fitted = conformal.fit(probs, targets, penalty=0.0)
    q = fitted.threshold(0.9)
    at = int(np.argmin(np.abs(conformal.conformity(probs, targets) - q)))  # the row that sets the threshold
    assert q > 0 and conformal.conformity(probs[at:at + 1], targets[at:at + 1])[0] == pytest.approx(q, abs=1e-7)
    for shift in (3e-7, -3e-7):  # the mass ranked above the right language grows (or shrinks) by 3e-7
        moved = probs[at].copy()
        top = int(np.argmax(moved))
        moved[top] += shift
        moved[targets[at]] -= shift
        assert targets[at] in fitted.sets(moved, 0.9)[0]
    # ... and the tolerance only adds languages that score within it of the threshold.
    _, scores = conformal.sorted_scores(probs)
    assert (fitted.sizes(probs, 0.9) == (scores <= q + conformal.TIE_TOLERANCE).sum(1)).all()
    assert conformal.TIE_TOLERANCE <= 1e-4


def test_score_by_hand():
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    # Row 0, target 0 ranks third: mass above = 0.5 + 0.3; row 1, target 0 ranks first: 0.
    np.testing.assert_allclose(conformal.conformity(probs, [0, 0]), [0.8, 0.0])
    np.testing.assert_allclose(conformal.conformity(probs, [0, 1], penalty=0.1, free_ranks=1), [0.8 + 0.2, 0.9 + 0.2])
    fitted = conformal.Conformal(np.array([0.0, 0.45, 0.7]), {"n": 3, "penalty": 0.0, "free_ranks": 1})
    # Mass above each label: row 0 (order 1, 2, 0): 0, 0.5, 0.8; row 1 (order 0, 2, 1): 0, 0.6, 0.9.
    assert fitted.sets(probs, 0.5) == [[1], [0]]  # ceil(4 * 0.5) = 2: qhat = 0.45
    assert fitted.sets(probs, 0.75) == [[1, 2], [0, 2]]  # ceil(4 * 0.75) = 3: qhat = 0.7


def test_round_trip_through_tensors_and_summary():
    probs, targets = dirichlet_task(300, seed=3)
    fitted = conformal.fit(probs, targets)
    back = conformal.Conformal.from_saved({k: v.numpy() for k, v in fitted.tensors().items()},
                                          json.loads(json.dumps(fitted.summary)))
    np.testing.assert_array_equal(back.scores, fitted.scores)
    assert back.scores.dtype == np.float32 and (np.diff(back.scores) >= 0).all()
    assert back.sets(probs) == fitted.sets(probs) and back.penalty == fitted.penalty
    with pytest.raises(ValueError, match="describe"):
        conformal.Conformal.from_saved(fitted.tensors(), {**fitted.summary, "n": 3})


def test_penalty_is_chosen_on_validation_only_and_recorded():
    probs, targets = dirichlet_task(600, seed=4)
    fitted = conformal.fit(probs, targets)
    choice = fitted.summary["penalty_choice"]
    assert set(choice["candidates"]) == {f"{p:g}" for p in conformal.CONFIG.penalties}
    assert fitted.penalty in conformal.CONFIG.penalties


# ---------------------------------------------------------------------------------------------------------------
# The committed checkpoints


@pytest.fixture(scope="module")
def committed(names_data):
    def get(kind):
        require((CHECKPOINTS / kind / "conformal.json").is_file(), f"checkpoints/{kind} has no prediction sets")
        clf = namecls.load(kind)
        split = make_split(names_data, clf.config["protocol"], clf.config["split_seed"])
        return clf, split

    return get


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_committed_test_coverage_is_near_ninety_and_equals_metrics_json(committed, kind):
    clf, split = committed(kind)
    reported = clf.metrics["conformal"]
    assert reported["coverage_asked"] == 0.9
    for part, key in (("test", "test"), ("val", "validation")):
        names, targets = split.part(part)
        probs = calibration.softmax(predict_logits(clf.model, names), clf.temperature)
        sets = clf.sets(probs)
        hit = covered([[clf.labels.index(lang) for lang in s] for s in sets], targets)
        sizes = np.array([len(s) for s in sets])
        # metrics.json was written on another machine: another CPU's kernels move probabilities in the 6th digit,
        # so a set whose edge language scores at the threshold may differ for one name (one name in n).
        one_name = 1 / len(targets) + 1e-12
        assert hit.mean() == pytest.approx(reported[key]["coverage"], abs=one_name)
        assert sizes.mean() == pytest.approx(reported[key]["mean_size"], abs=one_name)
        assert (sizes == 1).mean() == pytest.approx(reported[key]["singletons"], abs=one_name)
        for c, lang in enumerate(clf.labels):
            row = reported[key]["per_language"][lang]
            assert row["support"] == int((targets == c).sum())
            assert row["coverage"] == pytest.approx(hit[targets == c].mean(), abs=1 / row["support"] + 1e-12)
    assert abs(reported["test"]["coverage"] - 0.9) <= 0.03, f"{kind} test coverage {reported['test']['coverage']}"


def test_committed_predict_set_and_service(committed):
    clf, _ = committed("gru")
    models = {"gru": clf}
    name = "Nguyen"
    probs = np.array(list(dict(clf.predict(name, len(clf.labels))).values()))
    assert clf.predict_set(name) == clf.predict_set(name, 0.9)
    assert set(clf.predict_set(name, 0.6)) <= set(clf.predict_set(name, 0.99))
    details = service.predict_details(models, name, "gru", 3, 0.95)
    assert details["coverage"] == 0.95 and details["set"] == clf.predict_set(name, 0.95)
    assert details["set"][0] == next(iter(details["top"]))
    trace = service.trace(models, name, "gru")
    assert trace["sets"][-1] == clf.predict_set(name) and len(trace["sets"]) == len(name)
    rows = service.predict_batch(models, [name, "Smith", ""], "gru", 2)
    assert rows[0]["set"] == clf.predict_set(name) and rows[1]["set"] == clf.predict_set("Smith")
    assert rows[2]["set"] is None
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("bad", [0.3, 1.0, 0.995, "high", None, float("nan"), True])
def test_service_refuses_a_bad_coverage(committed, bad):
    clf, _ = committed("rnn")
    with pytest.raises(ValueError, match="coverage must be"):
        service.predict_details({"rnn": clf}, "Nguyen", "rnn", 3, bad)
