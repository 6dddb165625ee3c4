"""One training run end to end: build the model, train it on a split, score it and the baselines on the test part.

``train.py`` and the benchmarks call :func:`run` so that every number comes from the same code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace

import torch

from .data import NamesData
from .evaluation import baselines, predict_logits, score
from .models import CONFIGS, build
from .splits import Split
from .training import TrainConfig, train

log = logging.getLogger(__name__)

# The project's defaults per model (chosen on validation data of the clean protocol).
MODEL_DEFAULTS = {"rnn": {"hidden_size": 256}, "gru": {"hidden_size": 256, "num_layers": 2}}
TRAIN_DEFAULTS = {"rnn": TrainConfig(epochs=30, lr=3e-3), "gru": TrainConfig(epochs=30, lr=3e-3)}
DRY_RUN = {"model": {"hidden_size": 16, "num_layers": 1, "embedding_size": 8}, "train": {"epochs": 1, "max_batches": 3}}


def model_config(kind: str, num_classes: int, **overrides):
    cls = CONFIGS[kind]
    known = {k: v for k, v in {**MODEL_DEFAULTS[kind], **overrides}.items() if k in cls.__dataclass_fields__}
    return cls(num_classes=num_classes, **known)


def train_config(kind: str, **overrides) -> TrainConfig:
    return replace(TRAIN_DEFAULTS[kind], **overrides)


def run(kind: str, data: NamesData, split: Split, model_overrides: dict | None = None,
        train_overrides: dict | None = None, with_baselines: bool = True, progress: bool = True):
    """Train ``kind`` on ``split``; return (model, metrics dict ready for metrics.json)."""
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
    seconds = time.perf_counter() - start
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
        "validation": score(val_targets, predict_logits(model, val_names), data.labels),
        "test": score(test_targets, predict_logits(model, test_names), data.labels),
        "baselines": baselines(train_names, train_targets, test_names, test_targets, data.labels) if with_baselines else {},
    }
    return model, metrics


def checkpoint_extra(data: NamesData, split: Split, metrics: dict) -> dict:
    """The training facts config.json records beside the architecture."""
    return {
        "protocol": split.protocol,
        "split_seed": split.seed,
        "data_fingerprint": data.fingerprint,
        "train_config": metrics["train_config"],
    }
