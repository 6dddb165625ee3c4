"""Post-hoc logit adjustment: trading a little accuracy on the big languages for recall on the small ones.

Cross-entropy training learns the training prior: Russian is half the rows, Vietnamese 0.4%. Subtracting
``tau * log(prior)`` from the logits (Menon et al., 2021, "Long-tail learning via logit adjustment") moves the
decision towards a class-balanced rule; ``tau = 0`` changes nothing, ``tau = 1`` is the fully balanced rule.
``tau`` is chosen on the validation split (never the test split) and folded into the readout's bias, so the
checkpoint stays a plain model whose softmax already includes it.
"""

from __future__ import annotations

import numpy as np
import torch

from .evaluation import predict_logits, quick_score
from ..models.networks import Model

TAUS = np.round(np.arange(0.0, 1.51, 0.1), 2)


def log_prior(targets: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64) + 1.0  # +1: no log(0)
    return np.log(counts / counts.sum())


def choose_tau(val_logits: np.ndarray, val_targets: np.ndarray, prior: np.ndarray) -> tuple[float, list[dict]]:
    """The tau in TAUS that maximises the mean of validation accuracy and macro-F1; also every tau's scores."""
    curve = []
    for tau in TAUS:
        s = quick_score(val_targets, val_logits - tau * prior)
        curve.append({"tau": float(tau), **s, "objective": (s["accuracy"] + s["macro_f1"]) / 2})
    best = max(curve, key=lambda r: r["objective"])
    return best["tau"], curve


@torch.no_grad()
def fit_logit_adjustment(model: Model, train_targets, val_names, val_targets) -> dict:
    """Pick tau on validation data and fold ``-tau * log(prior)`` into ``model.readout.bias``; return the record."""
    prior = log_prior(np.asarray(train_targets), model.config.num_classes)
    tau, curve = choose_tau(predict_logits(model, val_names), np.asarray(val_targets), prior)
    # (type: ignore: -= on a Parameter is in place and leaves a Parameter; torch types __isub__ as returning Tensor)
    model.readout.bias -= torch.tensor(tau * prior, dtype=model.readout.bias.dtype)  # type: ignore[misc]
    return {"tau": tau, "validation_curve": curve}
