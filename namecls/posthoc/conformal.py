"""Prediction sets with a coverage guarantee: split conformal prediction on the calibrated probabilities.

**The promise.** For a name drawn like the validation and test names (same languages, same mix), the set
returned at coverage ``1 - alpha`` holds the right language with probability at least ``1 - alpha``, on average
over names (marginal coverage; Vovk et al., 2005; Angelopoulos & Bates, 2021, "A Gentle Introduction to
Conformal Prediction"). It says nothing about a single language or a name from none of the 18.

**The score** (deterministic RAPS, Angelopoulos et al., 2021, "Uncertainty Sets for Image Classifiers using
Conformal Prediction"): sort the languages by calibrated probability, most probable first (ties by label order);
a language at rank ``r`` (1-based) scores the probability mass of the languages ranked above it, plus
``penalty * max(0, r - free_ranks)``. ``penalty = 0`` is the adaptive score APS (Romano et al., 2020) with its
random ``U`` fixed at 0. The score grows with the rank and the top language scores 0, so a set is always the
``m >= 1`` most probable languages, ``m`` = the number of languages scoring at most ``qhat`` (within
:data:`TIE_TOLERANCE`, so that a score at the threshold is in on every CPU): never empty.

**The threshold.** The validation split's scores of the right language, ``s_1 … s_n``, are stored sorted, so
any coverage can be asked for later: ``qhat(1 - alpha)`` is the ``ceil((n + 1)(1 - alpha))``-th smallest score
(infinite — every language — when that exceeds ``n``). This is the finite-sample-valid split-conformal quantile.

**The penalty** is chosen on the validation split alone (the test split is never looked at), by 2-fold
cross-fitting over validation rows (fit ``qhat`` on the even rows, measure on the odd ones, and back): a penalty
is taken only if it shrinks APS's mean set size by at least ``min_gain`` while losing at most ``max_macro_loss``
of the coverage averaged over languages (so that smaller sets are not bought by leaving the small languages'
right answers out); otherwise APS. On the committed checkpoints no penalty earns its keep (sets shrink by < 2%),
so both use APS; ``conformal.json`` records the candidates.

**Why U = 0, not U = 1.** The randomised score adds ``U * p(language)`` with ``U`` uniform; a deterministic score
must fix ``U``. ``U = 1`` (mass including the language) puts a confident right answer's score near 1, above
``qhat``, and the forced top-1 language then covers it anyway: measured on validation, the GRU's "90%" sets
covered 98.6% with 5 languages on average. ``U = 0`` gives the top language the score 0, so it is always in the
set by the rule itself, and coverage lands on the nominal value (a small excess from the many exact-0 scores).

**Only on average.** Coverage per language is far from uniform: Russian and English names are covered more than
90% of the time, small languages (Scottish, Portuguese, Arabic) much less. ``metrics.json`` reports it per
language; conditional coverage per language would need far more than 7-30 validation names each.

**Under another prior** (:mod:`namecls.posthoc.prior`: a visitor who expects every language equally often). The promise
above is for names in the lists' mix, half of them Russian; under an equal prior the same threshold would cover
the big languages and miss the small ones. The sets are then recalibrated by label-shift-weighted split conformal
prediction (Tibshirani et al., 2019, "Conformal Prediction Under Covariate Shift"; Podkopaev & Ramdas, 2021,
"Distribution-free uncertainty quantification for classification under label shift"): the validation scores are
recomputed on the prior-moved probabilities and weighted by ``w(y) = prior(y) / share of y in validation``, and a
language ``y`` enters the set when its score is at most the weighted ``coverage`` quantile of the validation scores
with the name's own weight ``w(y)`` placed at infinity (the finite-sample correction; exact for each candidate
language, so the promise holds for names whose languages follow the chosen prior and whose spellings, language by
language, are like the lists'). A language with no validation name cannot be bounded and is always in the set.
With 7 validation names (Portuguese, Vietnamese) a language's weight is large and its share of the guarantee rests
on few names: the promise holds on average over calibration draws, and a single draw can miss it for that language.
Nothing here covers names *unlike* the lists' (``bench/surnames.py`` measures how far the promise carries to real
surnames from outside them).

Files: ``conformal.safetensors`` (``scores`` (n,) float32, sorted; ``val_probs`` (n, C) float32 and ``val_targets``
(n,) int64, the validation split's calibrated probabilities and right languages, from which the sets under another
prior are computed) and ``conformal.json`` (the method, the penalty, the evidence for it, n).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch

from ..errors import SavedPartError
from . import prior as prior_rule

FORMAT_VERSION = 1
# A score within this of the threshold counts as at it. The validation score that *is* the threshold is stored in
# float32 and recomputed, at answer time, from logits that another CPU's kernels round differently (probabilities
# move in the 6th digit): compared exactly, that name's set held its right language on one machine and not on
# another. Scores are probability masses (0 to 1 plus the penalty), so this widens a set only for a language whose
# score lies within 1e-5 of the threshold.
TIE_TOLERANCE = 1e-5
THRESHOLD_CACHE = 32  # (prior, coverage) pairs of per-language thresholds kept per model: 32 × C floats at most


@dataclass(frozen=True)
class ConformalConfig:
    """The conformal step's defaults: the coverage asked by default and the penalties tried."""

    coverage: float = 0.9  # what sets(), predict_set() and the metrics use unless told otherwise
    free_ranks: int = 1  # ranks the penalty leaves free (RAPS k_reg)
    penalties: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)  # RAPS lambda candidates; 0 is APS
    min_gain: float = 0.05  # a penalty must shrink APS's mean set size by this share ...
    max_macro_loss: float = 0.01  # ... and cost at most this much of its coverage averaged over languages
    coverage_range: tuple[float, float] = (0.5, 0.99)  # what a caller may ask for


CONFIG = ConformalConfig()


# ---------------------------------------------------------------------------------------------------------------
# The maths, as pure functions


def _order(probs: np.ndarray) -> np.ndarray:
    """(N, C) label indices by decreasing probability, ties by label order."""
    return np.argsort(-probs, axis=1, kind="stable")


def sorted_scores(probs, penalty: float = 0.0, free_ranks: int = CONFIG.free_ranks) -> tuple[np.ndarray, np.ndarray]:
    """(order (N, C), score (N, C)): the labels most probable first and the score of each label at its rank."""
    probs = np.asarray(probs, dtype=np.float64)
    order = _order(probs)
    ranks = np.arange(1, probs.shape[1] + 1)  # (C,)
    ranked = np.take_along_axis(probs, order, axis=1)  # (N, C)
    above = np.concatenate([np.zeros((len(ranked), 1)), np.cumsum(ranked, axis=1)[:, :-1]], axis=1)  # (N, C)
    return order, above + penalty * np.maximum(0, ranks - free_ranks)


def conformity(probs, targets, penalty: float = 0.0, free_ranks: int = CONFIG.free_ranks) -> np.ndarray:
    """(N,): the score of each row's right label."""
    order, score = sorted_scores(probs, penalty, free_ranks)
    rank = np.argmax(order == np.asarray(targets)[:, None], axis=1)  # (N,) 0-based rank of the target
    return score[np.arange(len(rank)), rank]


def qhat(scores_sorted: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) * coverage)``-th smallest of the n sorted scores; +inf when that is beyond n."""
    n = len(scores_sorted)
    k = math.ceil((n + 1) * coverage - 1e-9)  # tolerance: (n + 1) * 0.9 must not round up past an integer
    return float(scores_sorted[k - 1]) if 1 <= k <= n else math.inf


def set_sizes(probs, threshold: float, penalty: float = 0.0, free_ranks: int = CONFIG.free_ranks) -> np.ndarray:
    """(N,): how many of each row's most probable labels are in its set at ``threshold``. The top label scores 0
    and every threshold is a score (>= 0) or infinite, so a set is never empty."""
    _, score = sorted_scores(probs, penalty, free_ranks)
    return (score <= threshold + TIE_TOLERANCE).sum(axis=1)


def set_report(sizes: np.ndarray, covered: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """Coverage overall and per language (with support), mean set size and share of singleton sets."""
    per_language = {}
    for c, lang in enumerate(labels):
        members = targets == c
        per_language[lang] = {"coverage": float(covered[members].mean()) if members.any() else None,
                              "mean_size": float(sizes[members].mean()) if members.any() else None,
                              "support": int(members.sum())}
    return {"n": int(len(targets)), "coverage": float(covered.mean()) if len(targets) else None,
            "mean_size": float(sizes.mean()) if len(targets) else None,
            "singletons": float((sizes == 1).mean()) if len(targets) else None, "per_language": per_language}


def weighted_thresholds(scores, targets, weights: np.ndarray, coverage: float) -> np.ndarray:
    """(C,): for each language y, the weighted ``coverage`` quantile of the validation ``scores`` (n,) whose
    right languages are ``targets`` (n,), each weighted ``weights[target]``, with the candidate's own weight
    ``weights[y]`` at +inf (Tibshirani et al., 2019): the smallest score s with (sum of weights of scores <= s) /
    (total + weights[y]) >= coverage; +inf when no score reaches it or ``weights[y]`` is infinite (no validation
    name of y)."""
    scores, targets, weights = np.asarray(scores, np.float64), np.asarray(targets), np.asarray(weights, np.float64)
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]  # (n,)
    cum = np.cumsum(weights[targets[order]])  # (n,)
    total = cum[-1] if len(cum) else 0.0
    out = np.full(len(weights), math.inf)
    for y, w_y in enumerate(weights):
        if not np.isfinite(w_y) or total <= 0:
            continue
        i = int(np.searchsorted(cum, coverage * (total + w_y) * (1 - 1e-12)))  # first index reaching the share
        out[y] = ranked[i] if i < len(ranked) else math.inf
    return out


def shift_weights(targets, n_labels: int) -> np.ndarray:
    """(C,): w(y) = (1 / C) / (share of y among ``targets``): the weight that turns the validation split's mix into
    an equal prior; +inf for a language with no validation name."""
    counts = np.bincount(np.asarray(targets), minlength=n_labels).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, (1.0 / n_labels) / (counts / counts.sum()), math.inf)


# ---------------------------------------------------------------------------------------------------------------
# The fitted thing


class Conformal:
    """Fitted split-conformal prediction sets: the sorted validation scores and the score's penalty."""

    def __init__(self, scores, summary: dict, val_probs=None, val_targets=None):
        self.scores = np.sort(np.asarray(scores, dtype=np.float32))  # (n,) ascending
        self.summary = summary  # the JSON-able part (conformal.json)
        if self.scores.ndim != 1 or not np.isfinite(self.scores).all():
            raise ValueError(f"conformal scores must be a finite vector, not shape {self.scores.shape}")
        self.penalty = float(summary.get("penalty", 0.0))
        self.free_ranks = int(summary.get("free_ranks", CONFIG.free_ranks))
        # The validation split itself, for sets under another prior (None: an older checkpoint, lists prior only)
        self.val_probs = self.val_targets = None
        self.learned_prior: np.ndarray | None = None  # (C,): the prior the network learned (namecls.posthoc.prior)
        self._thresholds: dict[tuple[str, float], np.ndarray] = {}
        if val_probs is not None:
            self.val_probs = np.asarray(val_probs, dtype=np.float32)  # (n, C)
            self.val_targets = np.asarray(val_targets, dtype=np.int64)  # (n,)
            n, C = self.val_probs.shape if self.val_probs.ndim == 2 else (-1, -1)
            if (n != len(self.scores) or self.val_targets.shape != (n,) or not np.isfinite(self.val_probs).all()
                    or (self.val_probs < 0).any() or not np.allclose(self.val_probs.sum(axis=1), 1, atol=1e-3)
                    or self.val_targets.min(initial=0) < 0 or self.val_targets.max(initial=0) >= C):
                raise ValueError(f"conformal validation data must be {len(self.scores)} probability rows and their "
                                 f"languages, not shapes {self.val_probs.shape} and {self.val_targets.shape}")
            recomputed = np.sort(conformity(self.val_probs, self.val_targets, self.penalty, self.free_ranks))
            if np.abs(recomputed - self.scores).max(initial=0) > 1e-4:
                raise ValueError("conformal scores do not follow from the stored validation probabilities")
            self.learned_prior = prior_rule.learned(self.val_probs)  # (C,)

    @property
    def priors(self) -> tuple[str, ...]:
        """The priors this model's sets are calibrated for (:data:`namecls.posthoc.prior.PRIORS`, or only "lists")."""
        return prior_rule.PRIORS if self.val_probs is not None else ("lists",)

    def shift(self, prior: str = prior_rule.DEFAULT) -> np.ndarray | None:
        """(C,) the log-probability shift to ``prior`` (:func:`namecls.posthoc.prior.log_shift`); None for the lists'.
        ``ValueError`` for a prior this checkpoint has no validation data for."""
        prior = prior_rule.check(prior)
        if prior not in self.priors or self.learned_prior is None:
            if prior == "lists":
                return None
            raise ValueError(f"these prediction sets have no validation data for the {prior!r} prior "
                             "(an older checkpoint: only 'lists')")
        return prior_rule.log_shift(prior, self.learned_prior)

    def label_thresholds(self, prior: str, coverage: float) -> np.ndarray:
        """(C,): each language's threshold under ``prior`` at ``coverage`` (:func:`weighted_thresholds` on the
        validation scores of the prior-moved probabilities). Kept per model: at most
        :data:`THRESHOLD_CACHE` (prior, coverage) pairs of C floats, then the cache starts again."""
        key = (prior_rule.check(prior), float(coverage))
        if key[0] == "lists":  # unweighted: the one threshold for every language
            return np.full(1 if self.learned_prior is None else len(self.learned_prior), self.threshold(coverage))
        found = self._thresholds.get(key)  # read once: another thread may clear the cache meanwhile
        if found is None:
            moved = prior_rule.reweight(self.val_probs, self.shift(prior))  # (n, C)
            scores = conformity(moved, self.val_targets, self.penalty, self.free_ranks)  # (n,)
            weights = shift_weights(self.val_targets, moved.shape[1])  # (C,)
            found = weighted_thresholds(scores, self.val_targets, weights, coverage)
            if len(self._thresholds) >= THRESHOLD_CACHE:
                self._thresholds.clear()
            self._thresholds[key] = found
        return found

    def __repr__(self) -> str:
        return f"Conformal(n={len(self.scores)}, penalty={self.penalty:g})"

    def threshold(self, coverage: float = CONFIG.coverage) -> float:
        """qhat at ``coverage``."""
        return qhat(self.scores, coverage)

    def sizes(self, probs, coverage: float = CONFIG.coverage) -> np.ndarray:
        """(N,): the set size of each row of ``probs`` (N, C)."""
        return set_sizes(np.atleast_2d(probs), self.threshold(coverage), self.penalty, self.free_ranks)

    def sets(self, probs, coverage: float = CONFIG.coverage, prior: str = prior_rule.DEFAULT) -> list[list[int]]:
        """The set of each row of calibrated ``probs`` (N, C), already under ``prior``: label indices, most
        probable first, never empty (the top language is always in)."""
        probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
        order = _order(probs)
        if prior_rule.check(prior) == "lists":
            sizes = set_sizes(probs, self.threshold(coverage), self.penalty, self.free_ranks)
            return [row[:m] for row, m in zip(order.tolist(), sizes.tolist())]
        _, score = sorted_scores(probs, self.penalty, self.free_ranks)  # (N, C), by rank
        inside = score <= self.label_thresholds(prior, float(coverage))[order] + TIE_TOLERANCE  # (N, C)
        inside[:, 0] = True
        return [[label for label, keep in zip(row, keep_row) if keep]
                for row, keep_row in zip(order.tolist(), inside.tolist())]

    def report(self, probs, targets, labels: list[str], coverage: float = CONFIG.coverage,
               prior: str = prior_rule.DEFAULT) -> dict:
        """:func:`set_report` of this model's sets on ``probs`` (under ``prior``) with right labels ``targets``."""
        probs, targets = np.atleast_2d(np.asarray(probs, dtype=np.float64)), np.asarray(targets)
        sets = self.sets(probs, coverage, prior)
        sizes = np.array([len(row) for row in sets])
        covered = np.array([t in row for t, row in zip(targets.tolist(), sets)])
        return set_report(sizes, covered, targets, labels)

    # saved in a checkpoint as these files (namecls.checkpoint.parts.Part)
    FILES: ClassVar[tuple[str, ...]] = ("conformal.safetensors", "conformal.json")
    LABEL: ClassVar[str] = "prediction-set data"

    def tensors(self) -> dict[str, torch.Tensor]:
        """What ``conformal.safetensors`` holds."""
        out = {"scores": torch.from_numpy(self.scores.copy())}
        if self.val_probs is not None:
            assert self.val_targets is not None  # __init__ sets both or neither
            out["val_probs"] = torch.from_numpy(self.val_probs.copy())
            out["val_targets"] = torch.from_numpy(self.val_targets.copy())
        return out

    @classmethod
    def from_saved(cls, tensors: dict, summary: dict, config: dict | None = None) -> "Conformal":
        """Rebuild from :meth:`tensors` (torch or NumPy) and :attr:`summary`; ``ValueError`` if they disagree.
        (``config``, the checkpoint's, is the part protocol's; the scores need nothing from it.)"""
        if "scores" not in tensors:
            raise SavedPartError(cls.FILES[0], f"corrupt or incomplete {cls.LABEL} (no scores)")
        scores = np.asarray(tensors["scores"])
        if not isinstance(summary, dict) or summary.get("n") != len(scores):
            raise ValueError(f"conformal.json does not describe the {len(scores)} stored scores")
        if ("val_probs" in tensors) != ("val_targets" in tensors):
            raise ValueError("conformal.safetensors holds one of val_probs and val_targets without the other")
        if "val_probs" in tensors:
            return cls(scores, summary, np.asarray(tensors["val_probs"]), np.asarray(tensors["val_targets"]))
        return cls(scores, summary)


def _cross_fitted(probs: np.ndarray, targets: np.ndarray, penalty: float, config: ConformalConfig):
    """(sizes (N,), covered (N,)) of 2-fold cross-fitting on one split: each half's sets at the other half's qhat."""
    rows = np.arange(len(targets))
    sizes, covered = np.empty(len(rows), dtype=np.int64), np.empty(len(rows), dtype=bool)
    for fit_rows, use_rows in ((rows[0::2], rows[1::2]), (rows[1::2], rows[0::2])):
        q = qhat(np.sort(conformity(probs[fit_rows], targets[fit_rows], penalty, config.free_ranks)), config.coverage)
        sizes[use_rows] = set_sizes(probs[use_rows], q, penalty, config.free_ranks)
        covered[use_rows] = (conformity(probs[use_rows], targets[use_rows], penalty, config.free_ranks)
                             <= q + TIE_TOLERANCE)
    return sizes, covered


def choose_penalty(probs, targets, config: ConformalConfig = CONFIG) -> tuple[float, dict]:
    """(penalty, evidence): the module docstring's rule, on validation ``probs`` and ``targets`` only."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    present = np.unique(targets)
    evidence = {}
    for penalty in config.penalties:
        sizes, covered = _cross_fitted(probs, targets, penalty, config)
        macro = float(np.mean([covered[targets == c].mean() for c in present])) if len(present) else 1.0
        evidence[f"{penalty:g}"] = {"penalty": penalty, "mean_size": round(float(sizes.mean()), 4),
                                    "coverage": round(float(covered.mean()), 4),
                                    "macro_language_coverage": round(macro, 4)}
    aps = evidence[f"{config.penalties[0]:g}"]
    allowed = [row for row in evidence.values()
               if row["mean_size"] <= (1 - config.min_gain) * aps["mean_size"]
               and row["macro_language_coverage"] >= aps["macro_language_coverage"] - config.max_macro_loss]
    best = min(allowed, key=lambda row: (row["mean_size"], row["penalty"])) if allowed else aps
    return best["penalty"], evidence


def fit(val_probs, val_targets, config: ConformalConfig = CONFIG, penalty: float | None = None) -> Conformal:
    """Fit on the validation split's calibrated probabilities (N, C) and right labels (N,).

    ``penalty`` None: chosen by :func:`choose_penalty`; a number: used as it is (no evidence recorded).
    """
    val_probs, val_targets = np.asarray(val_probs, dtype=np.float64), np.asarray(val_targets)
    evidence = None
    if penalty is None:
        penalty, evidence = choose_penalty(val_probs, val_targets, config)
    scores = conformity(val_probs, val_targets, penalty, config.free_ranks)
    summary = {
        "format_version": FORMAT_VERSION,
        "method": ("split conformal prediction, deterministic RAPS score (APS when the penalty is 0): probability "
                   "mass down to the language + penalty * max(0, rank - free_ranks); qhat = the "
                   "ceil((n + 1) * coverage)-th smallest validation score; top language always in the set"),
        "fitted_on": "validation",
        "n": int(len(scores)),
        "penalty": float(penalty),
        "free_ranks": int(config.free_ranks),
        "priors": list(prior_rule.PRIORS),
        "other_priors": ("label-shift-weighted split conformal (Podkopaev & Ramdas, 2021): validation scores of the "
                         "prior-moved probabilities, weighted prior(y) / validation share of y, each candidate "
                         "language's own weight at +inf"),
        "default_coverage": config.coverage,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},  # as JSON reads it
        "penalty_choice": None if evidence is None else {
            "rule": ("2-fold cross-fitting on validation rows (even/odd), at the default coverage: the penalty with "
                     f"the smallest mean set size among those that shrink APS's (penalty 0) by at least "
                     f"{100 * config.min_gain:g}% and lose at most {100 * config.max_macro_loss:g} points of its "
                     "coverage averaged over languages; APS when none does"),
            "candidates": evidence,
        },
    }
    return Conformal(scores, summary, val_probs.astype(np.float32), val_targets)
