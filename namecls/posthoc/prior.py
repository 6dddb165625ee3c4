"""Which languages a visitor expects before reading a name: the prior, and Bayes' rule to change it.

A network trained by cross-entropy on the lists learns their proportions along with the spellings: the lists are
47% Russian and 0.4% Vietnamese, so before it has read a letter it already expects Russian. That is a fact about
the lists, not about the names a visitor types. Bayes' rule separates the two: the network's answer is
``p(language | name) ∝ p(name | language) · prior(language)``, so dividing by the prior it learned and multiplying
by another gives the answer under that other prior, without retraining (Saerens et al., 2002, "Adjusting the
Outputs of a Classifier to New a Priori Probabilities").

Two priors:

- ``"lists"`` (the default): the proportions of the training lists, i.e. the network's answer as it is.
- ``"equal"``: every language equally likely before the name is read.

**The prior the network learned** is estimated as the average of its calibrated probabilities over the validation
names (a calibrated model's average answer is its prior; Saerens et al.'s estimate). It is flatter than the lists'
shares (the network expects the small languages more often than they occur), so dividing by the shares would
over-correct; ``bench/surnames.py --designs`` compares the two on real surnames.

Under a prior other than the lists', the prediction sets are recalibrated for it (:mod:`namecls.posthoc.conformal`).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import torch

from ..errors import InputError

PRIORS = ("lists", "equal")
DEFAULT: Final = "lists"


def check(prior) -> str:
    """``prior`` as one of :data:`PRIORS`; ``ValueError`` naming them otherwise."""
    if isinstance(prior, str) and prior.strip().lower() in PRIORS:
        return prior.strip().lower()
    shown = repr(prior)[:40]
    raise InputError(f"prior must be one of {', '.join(repr(p) for p in PRIORS)}, not {shown}")


def learned(val_probs) -> np.ndarray:
    """(C,): the prior the network learned, the mean of its calibrated probabilities (N, C) on validation names."""
    mean = np.asarray(val_probs, dtype=np.float64).mean(axis=0)
    return mean / mean.sum()


def log_shift(prior: str, learned_prior: np.ndarray) -> np.ndarray | None:
    """(C,): what Bayes' rule adds to the calibrated log-probabilities to move from the learned prior to ``prior``
    (then renormalise); None for ``"lists"``, which changes nothing."""
    if check(prior) == "lists":
        return None
    learned_prior = np.asarray(learned_prior, dtype=np.float64)
    return np.log(np.full(len(learned_prior), 1.0 / len(learned_prior))) - np.log(learned_prior)


def shift_logits(scaled: torch.Tensor, shift) -> torch.Tensor:
    """Calibrated logits (…, C) moved by :func:`log_shift`'s ``shift`` (unchanged when None): their softmax is
    :func:`reweight` of theirs, for the parts that work on logits (namecls.explain.cell, namecls.explain.gradient)."""
    return scaled if shift is None else scaled + torch.as_tensor(shift, dtype=scaled.dtype)


def reweight(probs, shift: np.ndarray | None) -> np.ndarray:
    """Probabilities (..., C) moved by :func:`log_shift`'s ``shift`` and renormalised; unchanged when None."""
    if shift is None:
        return np.asarray(probs)
    moved = np.asarray(probs, dtype=np.float64) * np.exp(shift)
    return moved / moved.sum(axis=-1, keepdims=True)
