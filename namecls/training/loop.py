"""Training a classifier: length-bucketed mini-batches, AdamW with a one-cycle schedule, gradient clipping,
class-balanced cross-entropy, and best-on-validation selection with early stopping.

:func:`train` also takes optional :class:`Hooks` (``namecls.fit`` and the benchmarks use them): callbacks after each
epoch and every few batches, a stop event and a time budget.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..models import bptt
from ..data.names import pad_batch
from .evaluation import predict_logits, quick_score
from ..models.networks import Model, RNNClassifier
from ..recipes import TrainConfig

log = logging.getLogger(__name__)


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
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        rows = rows[np.argsort([len(names[i]) for i in rows], kind="stable")]
        batches.extend(rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    rng.shuffle(batches)
    return batches


def one_cycle(position: float, max_lr: float, warm_end: float = 0.15, end: float = 1.0, div_factor: float = 25.0,
              final_div_factor: float = 1e4, momentum: tuple[float, float] = (0.85, 0.95)) -> tuple[float, float]:
    """(learning rate, Adam beta1) at ``position`` of a one-cycle schedule that warms up over [0, ``warm_end``] and
    decays over [``warm_end``, ``end``]: torch's ``OneCycleLR`` (cosine warm-up to ``max_lr``, cosine decay to
    ``max_lr / div_factor / final_div_factor``; beta1 the other way). With the defaults ``position`` is the fraction
    (0–1) of the run done; :func:`train` also passes steps, as ``OneCycleLR`` counts them."""
    position = min(max(float(position), 0.0), end)
    initial, final = max_lr / div_factor, max_lr / div_factor / final_div_factor
    low, high = momentum

    def cos(start, stop, pct):  # OneCycleLR's cosine annealing, the same arithmetic
        return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1)

    if position <= warm_end:
        pct = position / warm_end
        return cos(initial, max_lr, pct), cos(high, low, pct)
    pct = (position - warm_end) / (end - warm_end)
    return cos(max_lr, final, pct), cos(low, high, pct)


@dataclass
class Hooks:
    """What a caller watches a training run with or limits it by (:func:`train`). The callbacks change nothing in
    the run: without ``stop`` and ``time_budget``, the same seed gives the same weights with hooks or without.

    - ``on_epoch(row, model)``: after each epoch's log line, with its history row and the validated model (the
      weight average when ``ema`` is on);
    - ``on_progress(info)``: every ``progress_every`` batches and after each epoch, with ``info`` = {epoch, batches
      (done in all), loss (running mean of this epoch), val_accuracy (None between epochs), seconds (since the
      start), fraction (0–1, of the time budget or of the epochs, whichever is further), final (False)};
    - ``stop``: anything with ``is_set()`` (a ``threading.Event``); once set, training stops before the next batch;
    - ``time_budget``: seconds; training stops before the first batch that starts after it. The learning rate then
      follows :func:`one_cycle` over that same fraction, so the schedule ends when the budget does.
    """

    on_epoch: Callable[[dict, Model], Any] | None = None
    on_progress: Callable[[dict], Any] | None = None
    progress_every: int = 200
    stop: Any = None
    time_budget: float | None = None


def train(model: Model, train_names, train_targets, val_names, val_targets, config: TrainConfig,
          progress: bool = True, hooks: Hooks | None = None) -> tuple[Model, list[dict]]:
    """Train ``model``; return the best-on-validation model and the per-epoch history. ``progress``: a tqdm bar
    per epoch; ``hooks``: see :class:`Hooks`.

    Stopped mid-epoch (by ``hooks.stop`` or ``hooks.time_budget``), the partial epoch is validated too (its history
    row has ``"partial": True``); the model returned is the best validated one. The last history row then also says
    ``stopped`` ("stop" or "time_budget").
    """
    if config.backprop not in ("autograd", "manual"):
        raise ValueError(f"backprop must be 'autograd' or 'manual', not {config.backprop!r}")
    if config.backprop == "manual" and not isinstance(model, RNNClassifier):
        raise ValueError(f"manual backprop is only written for the RNN, not {type(model).__name__}")
    hooks = hooks or Hooks()
    stop, time_budget = hooks.stop, hooks.time_budget
    if time_budget is not None and time_budget <= 0:
        raise ValueError(f"time_budget must be positive, not {time_budget!r}")
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
    total_steps = config.epochs * steps_per_epoch
    began, step, stopped = time.perf_counter(), 0, None

    def fraction() -> float:
        done = step / total_steps if total_steps else 1.0
        if time_budget is not None:
            done = max(done, (time.perf_counter() - began) / time_budget)
        return min(done, 1.0)

    def schedule() -> tuple[float, float]:
        """The (learning rate, beta1) of the next batch. Without a budget, at step ``step`` of ``total_steps``
        exactly as torch's ``OneCycleLR(pct_start=0.15)`` counts (its warm-up ends at step 0.15 * total - 1, its
        decay at the last step); with one, at the fraction :func:`fraction` says."""
        if time_budget is None:
            return one_cycle(step, config.lr, warm_end=0.15 * total_steps - 1, end=total_steps - 1)
        return one_cycle(fraction(), config.lr)

    def halted() -> str | None:
        if stop is not None and stop.is_set():
            return "stop"
        if time_budget is not None and time.perf_counter() - began >= time_budget:
            return "time_budget"
        return None

    def report(epoch, loss, seen, val_accuracy=None):
        assert hooks.on_progress is not None  # (only called when it is set)
        hooks.on_progress({"epoch": epoch, "batches": step, "loss": loss / seen if seen else None,
                           "val_accuracy": val_accuracy, "seconds": time.perf_counter() - began,
                           "fraction": fraction(), "final": False})

    # The weights that get validated and kept: the model itself, or a moving average of it.
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema)) if config.ema else None
    scored = cast(Model, averaged.module) if averaged else model  # the average is a copy of model
    best_score, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(1, config.epochs + 1):
        if best_state is not None and (stopped := halted()):
            history[-1]["stopped"] = stopped
            break
        start = time.perf_counter()
        model.train()
        batches = length_batches(train_names, config.batch_size, rng)[:steps_per_epoch]
        total_loss, seen = 0.0, 0
        for rows in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress):
            if stopped := halted():
                break
            lr, beta1 = schedule()
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = lr, (beta1, group["betas"][1])
            # The labelled regions are what ``bench/train_speed.py --profile`` adds up (free when not profiling).
            with record_function("batch"):
                x, lengths = pad_batch([train_names[i] for i in rows])
                y = torch.as_tensor(train_targets[rows])
            with record_function("forward"):
                if config.backprop == "manual":  # the same loss; backward() runs the hand-written BPTT
                    loss = bptt.manual_loss(cast(RNNClassifier, model), x, lengths, y, loss_fn)  # checked above
                else:
                    loss = loss_fn(model(x, lengths), y)
            with record_function("backward"):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            with record_function("update"):
                nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                optimizer.step()
                if averaged:
                    averaged.update_parameters(model)
            total_loss += loss.item() * len(rows)
            seen += len(rows)
            step += 1
            if hooks.on_progress is not None and step % hooks.progress_every == 0:
                report(epoch, total_loss, seen)
        if stopped and seen == 0 and best_state is not None:
            history[-1]["stopped"] = stopped
            break  # stopped before this epoch's first batch: nothing new to validate
        with record_function("validate"):
            val = quick_score(val_targets, predict_logits(scored, val_names))
        row = {
            "epoch": epoch,
            "train_loss": total_loss / seen if seen else None,  # a stopped epoch: over the batches it ran
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "seconds": time.perf_counter() - start,
        }
        if stopped:
            row["partial"] = seen < sum(len(b) for b in batches)
            row["stopped"] = stopped
        history.append(row)
        improved = val[config.select_on] > best_score
        if improved:
            best_score, best_state, stale = val[config.select_on], copy.deepcopy(scored.state_dict()), 0
        else:
            stale += 1
        log.info("epoch %2d | loss %.4f | val acc %.4f | val macro-F1 %.4f | %5.1fs%s", epoch,
                 math.nan if row["train_loss"] is None else row["train_loss"],
                 row["val_accuracy"], row["val_macro_f1"], row["seconds"], " *" if improved else "")
        if hooks.on_epoch is not None:
            hooks.on_epoch(row, scored)
        if hooks.on_progress is not None:
            report(epoch, total_loss, seen, val["accuracy"])
        if stopped:
            log.info("stopped by %s after %d batches", "the stop event" if stopped == "stop" else "the time budget",
                     step)
            break
        if stale >= config.patience:
            log.info("no better validation %s for %d epochs: stopping", config.select_on, config.patience)
            break
    assert best_state is not None  # epochs >= 1: the first epoch is kept (its score, >= 0, beats -1)
    model.load_state_dict(best_state)
    model.eval()
    return model, history
