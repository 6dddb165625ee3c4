"""Fitting everything that comes after training (:class:`namecls.posthoc.parts.Posthoc`): :func:`fit` takes a trained
model, its split and its validation and test logits and fits every part with the metrics it adds. ``train.py`` (on
the logits :func:`namecls.training.experiment.run` returns) and ``python -m namecls.training.refit``
(:func:`fit_on_split`, which computes them) both fit here and save with :func:`namecls.checkpoint.save`, so a
checkpoint refitted without retraining holds the same numbers as a freshly trained one.
"""

from __future__ import annotations

import numpy as np

from ..explain import projection
from ..explain import units as explain
from ..posthoc import calibration, conformal, novelty, seen
from ..posthoc import prior as prior_rule
from ..posthoc.parts import Posthoc
from . import evaluation


def fit(model, labels: list[str], split, val_logits, test_logits, with_maps: bool = True) -> Posthoc:
    """Fit every post-training part of ``model`` on ``split`` given its validation and test logits (N, C).

    ``with_maps=False`` skips the training-state fits (map, explanation data, novelty): only calibration, the
    conformal sets and the training-name table, which take a second.
    """
    (val_names, val_targets), (_, test_targets) = split.part("val"), split.part("test")
    train_names, train_targets = split.part("train")
    config_fields, metrics = calibration.calibrate(val_logits, val_targets, test_logits, test_targets)
    temperature = config_fields["temperature"]
    val_probs, test_probs = (calibration.softmax(z, temperature) for z in (val_logits, test_logits))
    sets = conformal.fit(val_probs, val_targets)
    coverage = conformal.CONFIG.coverage
    metrics["conformal"] = {
        "method": sets.summary["method"], "penalty": sets.penalty, "coverage_asked": coverage,
        "fitted_on": "validation", "penalty_choice": sets.summary["penalty_choice"],
        "test": sets.report(test_probs, test_targets, labels, coverage),
        "validation": sets.report(val_probs, val_targets, labels, coverage),
        # Under the equal prior (namecls.posthoc.prior), each test language counted equally: the mean of its
        # per-language rows
        "test_equal_prior": _equal_prior_report(sets, test_probs, test_targets, labels, coverage),
        "validation_meaning": "in-sample: the split the scores were fitted on (its coverage is near the asked one "
                              "by construction); the test split is the honest measure",
    }
    fitted = Posthoc(temperature, config_fields["low_confidence"], sets,
                     seen.fit(train_names, train_targets, labels), metrics=metrics)
    if not with_maps:
        return fitted
    fitted.projection = projection.fit(model, train_names, train_targets, labels, validation=(val_names, val_targets))
    metrics["projection"] = {k: fitted.projection.summary[k] for k in
                             ("method", "fitted_on", "n_names", "axis_share", "axis_share_meaning", "evidence")}
    fitted.explain = explain.fit(model, train_names, train_targets, labels)
    metrics["explain"] = {k: fitted.explain.summary[k] for k in
                          ("methods", "fitted_on", "n_distinct_train_names", "n_prefix_states", "k")}
    fitted.novelty = novelty.fit(model, train_names, train_targets, labels, val_names=val_names)
    metrics["novelty"] = fitted.novelty.summary
    return fitted


def _equal_prior_report(sets: conformal.Conformal, test_probs, test_targets, labels: list[str], coverage: float):
    """The sets under the equal prior on the test split, every language present counted equally: coverage and mean
    size averaged over languages (the test split is drawn in the lists' mix; this is what an equal mix would see)."""
    moved = prior_rule.reweight(test_probs, sets.shift("equal"))
    rows = [row for row in sets.report(moved, test_targets, labels, coverage, "equal")["per_language"].values()
            if row["support"]]
    return {"coverage": float(np.mean([row["coverage"] for row in rows])),
            "mean_size": float(np.mean([row["mean_size"] for row in rows])), "languages": len(rows),
            "n": int(sum(row["support"] for row in rows))}


def fit_on_split(model, labels: list[str], split, with_maps: bool = True) -> Posthoc:
    """:func:`fit` with the model's validation and test logits computed here."""
    val_logits, test_logits = (evaluation.predict_logits(model, split.part(part)[0]) for part in ("val", "test"))
    return fit(model, labels, split, val_logits, test_logits, with_maps=with_maps)


def coverage_line(metrics: dict) -> str:
    """'90% sets: test coverage 90.3%, mean size 1.32, 79% singletons (validation 90.0%, 1.31, 80%)'."""
    sets = metrics.get("conformal")
    if not sets:
        return "no prediction sets"
    test, val = sets["test"], sets["validation"]
    return (f"{100 * sets['coverage_asked']:g}% sets: test coverage {100 * test['coverage']:.1f}%, mean size "
            f"{test['mean_size']:.2f}, {100 * test['singletons']:.0f}% singletons (validation "
            f"{100 * val['coverage']:.1f}%, {val['mean_size']:.2f}, {100 * val['singletons']:.0f}%)")
