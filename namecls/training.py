"""Training a classifier: length-bucketed mini-batches, AdamW with a one-cycle schedule, gradient clipping,
class-balanced cross-entropy, and best-on-validation selection with early stopping."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import bptt
from .data import pad_batch
from .evaluation import predict_logits, quick_score
from .models import RNNClassifier

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clip: float = 1.0  # max gradient norm
    label_smoothing: float = 0.05
    class_weight_power: float = 0.5  # loss weight of a class ∝ count^-power (0: plain cross-entropy)
    patience: int = 8  # epochs without a better validation score before stopping
    ema: float = 0.0  # if > 0: validate and keep an exponential moving average of the weights (decay per step)
    adjust_logits: bool = True  # after training, fold a validation-chosen prior correction into the readout bias
    select_on: str = "accuracy"  # validation metric that picks the best epoch: accuracy or macro_f1
    seed: int = 0
    max_batches: int | None = None  # cap batches per epoch (dry runs)
    backprop: str = "autograd"  # "manual": the RNN's gradients by hand-written BPTT (namecls.bptt), same loss


def class_weights(targets: np.ndarray, num_classes: int, power: float) -> torch.Tensor:
    """Weights ∝ count^-power, scaled so that the average weight per training row is 1."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    weights *= len(targets) / (weights * counts).sum()
    return torch.tensor(weights, dtype=torch.float32)


def length_batches(names: list[str], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled mini-batches of rows with similar lengths (little padding), in shuffled order."""
    order = rng.permutation(len(names))
    # Sort within chunks of 50 batches by length: padding drops, batches stay varied.
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        rows = rows[np.argsort([len(names[i]) for i in rows], kind="stable")]
        batches.extend(rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    rng.shuffle(batches)
    return batches


def train(model: nn.Module, train_names, train_targets, val_names, val_targets, config: TrainConfig,
          progress: bool = True, on_epoch=None) -> tuple[nn.Module, list[dict]]:
    """Train ``model``; return the best-on-validation model and the per-epoch history.

    ``on_epoch(row, model)``, if given, is called after each epoch's log line (benchmarks use it).
    """
    if config.backprop not in ("autograd", "manual"):
        raise ValueError(f"backprop must be 'autograd' or 'manual', not {config.backprop!r}")
    if config.backprop == "manual" and not isinstance(model, RNNClassifier):
        raise ValueError(f"manual backprop is only written for the RNN, not {type(model).__name__}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_targets = np.asarray(train_targets)
    val_targets = np.asarray(val_targets)
    num_classes = model.config.num_classes
    loss_fn = nn.CrossEntropyLoss(
        weight=class_weights(train_targets, num_classes, config.class_weight_power),
        label_smoothing=config.label_smoothing,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_names) / config.batch_size)
    if config.max_batches:
        steps_per_epoch = min(steps_per_epoch, config.max_batches)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    # The weights that get validated and kept: the model itself, or a moving average of it.
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema)) if config.ema else None
    scored = averaged.module if averaged else model
    best_score, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        batches = length_batches(train_names, config.batch_size, rng)[:steps_per_epoch]
        total_loss = 0.0
        for rows in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress):
            x, lengths = pad_batch([train_names[i] for i in rows])
            y = torch.as_tensor(train_targets[rows])
            if config.backprop == "manual":  # the same loss; backward() runs the hand-written BPTT
                loss = bptt.manual_loss(model, x, lengths, y, loss_fn)
            else:
                loss = loss_fn(model(x, lengths), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            schedule.step()
            if averaged:
                averaged.update_parameters(model)
            total_loss += loss.item() * len(rows)
        val = quick_score(val_targets, predict_logits(scored, val_names))
        row = {
            "epoch": epoch,
            "train_loss": total_loss / sum(len(b) for b in batches),
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        improved = val[config.select_on] > best_score
        if improved:
            best_score, best_state, stale = val[config.select_on], copy.deepcopy(scored.state_dict()), 0
        else:
            stale += 1
        log.info("epoch %2d | loss %.4f | val acc %.4f | val macro-F1 %.4f | %5.1fs%s", epoch, row["train_loss"],
                 row["val_accuracy"], row["val_macro_f1"], row["seconds"], " *" if improved else "")
        if on_epoch is not None:
            on_epoch(row, scored)
        if stale >= config.patience:
            log.info("no better validation %s for %d epochs: stopping", config.select_on, config.patience)
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, history
