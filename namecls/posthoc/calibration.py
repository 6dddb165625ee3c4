"""Probabilities people can trust: temperature scaling, calibration error, and a low-confidence flag.

**Temperature.** A trained network's softmax is usually over- or under-confident (label smoothing and the logit
adjustment push it around). One scalar ``T`` divides every logit, ``softmax(z / T)``; it is fitted on the
validation split (never the test split) by minimising the negative log-likelihood (Guo et al., 2017, "On
Calibration of Modern Neural Networks"). Dividing by ``T > 0`` never changes which language ranks first, so
accuracy, macro-F1 and every confusion matrix stay exactly as they were. ``config.json`` stores ``"temperature"``;
:class:`namecls.Classifier` applies it to every probability it returns (a checkpoint without it means ``T = 1``).

**Calibration error.** ``ece``: the expected calibration error over 15 equal-width bins of the top probability,
``sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|``; ``reliability`` gives the bins themselves (the
reliability diagram). ``metrics.json`` reports both on the test split, before and after the temperature.

**Low-confidence flag.** A name is flagged when its calibrated top probability is below a threshold chosen on the
validation split: the largest ``t`` such that the validation names whose top probability is below ``t`` get the
right language at most half the time (``TARGET_ACCURACY``). In words: *a flagged answer is more likely wrong than
right*. The entropy of the prediction (nats; at most ln 18 ≈ 2.89) is reported beside it. A name from none of the
18 languages (a Turkish "Demirkan") has no right answer at all, and tends to get a flat, low-topped prediction:
the flag is the model's only way of saying "not sure". A checkpoint without a fitted rule uses ``DEFAULT_RULE``.

This module holds the maths only, as pure functions. :mod:`namecls.training.posthoc` fits it (with everything else
fitted after training) and ``python -m namecls.training.refit`` adds it to an already-trained checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import entr, log_softmax

N_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)
TARGET_ACCURACY = 0.5  # flagged validation names are right at most this often
DEFAULT_RULE: dict[str, Any] = {"score": "top_probability", "threshold": 0.5,
                                 "rule": "low confidence when the top probability is below the threshold (default, "
                                         "not fitted)"}


# ---------------------------------------------------------------------------------------------------------------
# Probabilities and scores


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` in float64, numerically stable."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / float(temperature), axis=-1))


def nll(logits, targets, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits / temperature)``."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / float(temperature), axis=-1)
    targets = np.asarray(targets)
    return float(-logp[np.arange(len(targets)), targets].mean())


def fit_temperature(logits, targets, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature in ``bounds`` that minimises :func:`nll` (bounded Brent search on log T).

    NLL is convex in 1/T, so it has a single minimum: the search is deterministic and needs no starting point.
    """
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    if len(targets) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar  # fitting only: inference (and start-up) never loads scipy.optimize

    result = minimize_scalar(lambda log_t: nll(logits, targets, math.exp(log_t)),
                             bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-6})
    best = float(math.exp(result.x))
    # Keep T = 1 unless the fitted value is really better (flat likelihood, e.g. a degenerate split).
    return best if nll(logits, targets, best) < nll(logits, targets, 1.0) else 1.0


def entropy(probs, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats of each probability vector (0: certain; ln C: uniform over C languages)."""
    return entr(np.asarray(probs, dtype=np.float64)).sum(axis=axis)


def _bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence: equal-width bins (lo, hi] over [0, 1]; 0 goes to the first bin."""
    return np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)


def reliability(probs, targets, n_bins: int = N_BINS) -> list[dict]:
    """The reliability diagram: per equal-width bin of the top probability, its range, how many names fall in it,
    their mean top probability (``confidence``) and how often the top language is right (``accuracy``; both
    ``None`` for an empty bin)."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    index = _bins(confidence, n_bins)
    rows = []
    for b in range(n_bins):
        members = index == b
        n = int(members.sum())
        rows.append({"lower": round(b / n_bins, 6), "upper": round((b + 1) / n_bins, 6), "count": n,
                     "confidence": float(confidence[members].mean()) if n else None,
                     "accuracy": float(correct[members].mean()) if n else None})
    return rows


def ece(probs, targets, n_bins: int = N_BINS) -> float:
    """Expected calibration error (top-label, ``n_bins`` equal-width bins), in [0, 1]."""
    return _ece_of(reliability(probs, targets, n_bins))


def _ece_of(bins: list[dict]) -> float:
    """The expected calibration error of :func:`reliability`'s bins."""
    total = sum(b["count"] for b in bins)
    if not total:
        return 0.0
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


# ---------------------------------------------------------------------------------------------------------------
# The low-confidence rule


def choose_threshold(probs, targets, target_accuracy: float = TARGET_ACCURACY) -> dict:
    """The low-confidence rule fitted on (validation) ``probs``: flag a name when its top probability is below
    ``threshold``, the largest value such that the names below it are right at most ``target_accuracy`` of the
    time. Returns the rule (JSON-able): score, threshold, the target and a one-line description."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    top = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == targets).astype(np.float64)
    order = np.argsort(top, kind="stable")
    top_sorted = top[order]
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)  # accuracy of the k least confident
    ok = np.flatnonzero(running <= target_accuracy)
    if len(top) == 0 or ok.size == 0:
        threshold = float(top_sorted[0]) if len(top) else DEFAULT_RULE["threshold"]  # flags nothing seen
    elif ok[-1] + 1 < len(top_sorted):
        threshold = float((top_sorted[ok[-1]] + top_sorted[ok[-1] + 1]) / 2)
    else:
        threshold = 1.0  # every validation name is right at most half the time: flag everything
    return {
        "score": "top_probability",
        "threshold": round(threshold, 6),
        "target_accuracy": target_accuracy,
        "rule": (f"low confidence when the calibrated top probability is below the threshold: the largest value "
                 f"such that validation names below it get the right language at most "
                 f"{100 * target_accuracy:g}% of the time"),
    }


def low_confidence(probs, rule: dict | None = None) -> np.ndarray:
    """Boolean flag per row of (calibrated) ``probs`` (or a single vector → 0-d array) under ``rule``."""
    rule = rule or DEFAULT_RULE
    probs = np.asarray(probs, dtype=np.float64)
    if rule.get("score", "top_probability") == "entropy":
        return entropy(probs) > float(rule["threshold"])
    return probs.max(axis=-1) < float(rule["threshold"])


def flag_rates(probs, targets, rule: dict) -> dict:
    """How often ``rule`` fires on ``probs`` and how accurate the flagged and the other names are."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    flags = low_confidence(probs, rule)
    correct = probs.argmax(axis=1) == targets
    return {"n": int(len(targets)), "flag_rate": float(flags.mean()) if len(flags) else 0.0,
            "accuracy_flagged": float(correct[flags].mean()) if flags.any() else None,
            "accuracy_confident": float(correct[~flags].mean()) if (~flags).any() else None,
            "mean_entropy": float(entropy(probs).mean()) if len(flags) else None}


# ---------------------------------------------------------------------------------------------------------------
# Everything a checkpoint gets


def calibrate(val_logits, val_targets, test_logits, test_targets, n_bins: int = N_BINS) -> tuple[dict, dict]:
    """Fit the temperature and the low-confidence rule on validation logits; score both splits.

    Returns ``(config_fields, metrics_fields)``: ``{"temperature", "low_confidence"}`` for config.json and
    ``{"calibration", "low_confidence"}`` for metrics.json (ECE, NLL, reliability bins before and after).
    """
    temperature = fit_temperature(val_logits, val_targets)
    parts = {"validation": (val_logits, val_targets), "test": (test_logits, test_targets)}
    report = {"temperature": temperature, "fitted_on": "validation", "method": "temperature scaling, minimum NLL",
              "n_bins": n_bins}
    calibrated = {}
    for part, (logits, targets) in parts.items():
        after = softmax(logits, temperature)
        calibrated[part] = after
        bins_before, bins_after = reliability(softmax(logits), targets, n_bins), reliability(after, targets, n_bins)
        entry: dict[str, Any] = {"n": int(len(targets)), "ece_before": _ece_of(bins_before),
                                 "ece_after": _ece_of(bins_after), "nll_before": nll(logits, targets),
                                 "nll_after": nll(logits, targets, temperature)}
        if part == "test":
            entry["reliability_before"], entry["reliability_after"] = bins_before, bins_after
        report[part] = entry
    rule = choose_threshold(calibrated["validation"], val_targets)
    flags = {**rule, "validation": flag_rates(calibrated["validation"], val_targets, rule),
             "test": flag_rates(calibrated["test"], test_targets, rule)}
    return {"temperature": temperature, "low_confidence": rule}, {"calibration": report, "low_confidence": flags}
