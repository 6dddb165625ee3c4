"""One training run end to end: build the model, train it on a split, calibrate it and map its hidden states
(:mod:`namecls.calibration`, :mod:`namecls.projection`), score it and the baselines on the test part.

``train.py`` and the benchmarks call :func:`run` so that every number comes from the same code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace

import torch

from .adjust import fit_logit_adjustment
from .calibration import post_training
from .data import NamesData
from .evaluation import baselines, predict_logits, score
from .models import CONFIGS, build
from .splits import Split
from .training import TrainConfig, train

log = logging.getLogger(__name__)

# The project's defaults per model, chosen on the clean protocol's validation split (see README, "Training").
MODEL_DEFAULTS = {"rnn": {"hidden_size": 512}, "gru": {"hidden_size": 256, "num_layers": 2, "dropout": 0.4}}
TRAIN_DEFAULTS = {
    "rnn": TrainConfig(epochs=40, lr=1e-2, class_weight_power=0.25),
    "gru": TrainConfig(epochs=30, lr=3e-3, class_weight_power=0.0, ema=0.998),
}
DRY_RUN = {"model": {"hidden_size": 16, "num_layers": 1, "embedding_size": 8}, "train": {"epochs": 1, "max_batches": 3}}


def model_config(kind: str, num_classes: int, **overrides):
    cls = CONFIGS[kind]
    known = {k: v for k, v in {**MODEL_DEFAULTS[kind], **overrides}.items() if k in cls.__dataclass_fields__}
    return cls(num_classes=num_classes, **known)


def train_config(kind: str, **overrides) -> TrainConfig:
    return replace(TRAIN_DEFAULTS[kind], **overrides)


def run(kind: str, data: NamesData, split: Split, model_overrides: dict | None = None,
        train_overrides: dict | None = None, with_baselines: bool = True, progress: bool = True):
    """Train ``kind`` on ``split``; return (model, metrics dict ready for metrics.json).

    After training and the logit adjustment, the softmax temperature and the low-confidence rule are fitted on the
    validation split and the hidden-state map and the explanation data on the training names; they are left on
    ``model.projection`` and ``model.explain`` (which :func:`namecls.checkpoint.save` writes), the rest goes into
    the metrics (and, via :func:`checkpoint_extra`, into config.json).
    """
    tconfig = train_config(kind, **(train_overrides or {}))
    mconfig = model_config(kind, len(data.labels), **(model_overrides or {}))
    torch.manual_seed(tconfig.seed)
    model = build(mconfig)
    train_names, train_targets = split.part("train")
    val_names, val_targets = split.part("val")
    test_names, test_targets = split.part("test")
    log.info("%s: %d parameters; %s split (seed %d): %s", kind.upper(), sum(p.numel() for p in model.parameters()),
             split.protocol, split.seed, split.sizes())
    start = time.perf_counter()
    model, history = train(model, train_names, train_targets, val_names, val_targets, tconfig, progress=progress)
    adjustment = fit_logit_adjustment(model, train_targets, val_names, val_targets) if tconfig.adjust_logits else None
    seconds = time.perf_counter() - start
    val_logits, test_logits = predict_logits(model, val_names), predict_logits(model, test_names)
    _, calibration_metrics, model.projection, model.explain = post_training(model, data.labels, split, val_logits,
                                                                            test_logits)
    metrics = {
        "model": kind,
        "protocol": split.protocol,
        "split_seed": split.seed,
        "split_sizes": split.sizes(),
        "train_config": asdict(tconfig),
        "training_seconds": seconds,
        "epochs_run": len(history),
        "best_epoch": max(history, key=lambda r: r[f"val_{tconfig.select_on}"])["epoch"],
        "history": history,
        "logit_adjustment": adjustment,
        "validation": score(val_targets, val_logits, data.labels),
        "test": score(test_targets, test_logits, data.labels),
        "baselines": baselines(train_names, train_targets, test_names, test_targets, data.labels) if with_baselines else {},
        **calibration_metrics,  # "calibration", "low_confidence", "projection", "explain"
    }
    return model, metrics


def checkpoint_extra(data: NamesData, split: Split, metrics: dict) -> dict:
    """The training facts config.json records beside the architecture."""
    return {
        "protocol": split.protocol,
        "split_seed": split.seed,
        "data_fingerprint": data.fingerprint,
        "train_config": metrics["train_config"],
        **calibration_fields(metrics),
    }


def calibration_fields(metrics: dict) -> dict:
    """config.json's ``temperature`` and ``low_confidence`` rule, from metrics with a ``calibration`` entry."""
    fields = {}
    if metrics.get("calibration"):
        fields["temperature"] = metrics["calibration"]["temperature"]
    if metrics.get("low_confidence"):
        rule = metrics["low_confidence"]
        fields["low_confidence"] = {k: v for k, v in rule.items() if k not in ("validation", "test")}
    return fields
