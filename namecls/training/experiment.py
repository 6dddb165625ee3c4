"""One training run: build the model, train it on a split, score it and the baselines on the test part; and the
project's default hyperparameters per model (the dataclasses below are their one source: ``train.py --help``
prints them from here).

``train.py`` and the benchmarks call :func:`run` so that every number comes from the same code; ``train.py`` then
fits the post-training parts (:mod:`namecls.posthoc.parts`) and saves the checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace

import torch

from ..posthoc.adjust import fit_logit_adjustment
from ..data.names import NamesData
from .evaluation import baselines, predict_logits, score
from ..models.networks import build
from ..recipes import MODEL_DEFAULTS, TRAIN_DEFAULTS, TrainConfig
from ..data.splits import Split
from .loop import train

log = logging.getLogger(__name__)

def model_config(kind: str, num_classes: int, **overrides):
    """``kind``'s default architecture for ``num_classes`` languages, with the ``overrides`` it has fields for."""
    defaults = MODEL_DEFAULTS[kind]
    known = {k: v for k, v in overrides.items() if k in defaults.__dataclass_fields__}
    return replace(defaults, num_classes=num_classes, **known)


def train_config(kind: str, **overrides) -> TrainConfig:
    """``kind``'s default training settings with ``overrides``."""
    return replace(TRAIN_DEFAULTS[kind], **overrides)


def default_text(name: str) -> str:
    """Each model's default of model or training field ``name``, for a help text: 'RNN 512, GRU 256' (a model
    without the field is left out; one value when both agree)."""
    values = {}
    for kind in MODEL_DEFAULTS:
        for defaults in (MODEL_DEFAULTS[kind], TRAIN_DEFAULTS[kind]):
            if name in defaults.__dataclass_fields__:
                values[kind] = getattr(defaults, name)
    if len(set(values.values())) == 1 and len(values) == len(MODEL_DEFAULTS):
        return f"{next(iter(values.values())):g}"
    return ", ".join(f"{kind.upper()} {value:g}" for kind, value in values.items())


def run(kind: str, data: NamesData, split: Split, model_overrides: dict | None = None,
        train_overrides: dict | None = None, with_baselines: bool = True, progress: bool = True):
    """Train ``kind`` on ``split`` (then fold the logit adjustment in); return (model, metrics: the training run
    and the validation, test and baseline scores). The post-training fits are :func:`namecls.posthoc.parts.fit`'s."""
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
        "baselines": (baselines(train_names, train_targets, test_names, test_targets, data.labels)
                      if with_baselines else {}),
    }
    return model, metrics


def checkpoint_extra(data: NamesData, split: Split, metrics: dict) -> dict:
    """The training facts config.json records beside the architecture (the post-training fields come from
    :meth:`namecls.posthoc.parts.Posthoc.config_fields`)."""
    return {
        "protocol": split.protocol,
        "split_seed": split.seed,
        "data_fingerprint": data.fingerprint,
        "train_config": metrics["train_config"],
    }
