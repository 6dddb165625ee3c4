"""The one training pipeline, :func:`run`: build the model, train it on a split, fold in the logit adjustment,
score it (and the baselines) on validation and test; and the defaults per model it reads (:mod:`namecls.recipes`).

``train.py``, :func:`namecls.fit` and the benchmarks all call :func:`run`, so that every number comes from the same
code; ``train.py`` and :func:`namecls.fit` then fit the post-training parts (:func:`namecls.training.posthoc.fit`) on
the logits it returns, and save the checkpoint or return the classifier.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from . import evaluation
from ..data.names import NamesData
from ..data.splits import Split
from ..models.networks import Model, build
from . import adjust
from ..recipes import MODEL_DEFAULTS, TRAIN_DEFAULTS, TrainConfig
from .loop import Hooks, train

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


@dataclass
class Trained:
    """What :func:`run` returns: the model (the best on validation, its logit adjustment folded in), its metrics,
    and its validation and test logits (N, C), which :func:`namecls.training.posthoc.fit` takes."""

    model: Model
    metrics: dict
    val_logits: np.ndarray
    test_logits: np.ndarray


def run(kind: str, labels: list[str], split: Split, model_overrides: dict | None = None,
        train_overrides: dict | None = None, with_baselines: bool = True, progress: bool = True,
        hooks: Hooks | None = None, between_steps: Callable[[str], None] | None = None) -> Trained:
    """Train ``kind`` for ``labels`` on ``split`` (its defaults with the overrides; the seed is the train
    settings'), fold the validation-chosen logit adjustment in, and score it on validation and test.

    The metrics: the training run (settings, seconds of training and adjustment, history, best epoch, logit
    adjustment), the ``validation`` and ``test`` scores, and ``baselines`` on the test part ({} unless
    ``with_baselines``). ``progress`` shows tqdm bars; ``hooks`` go to :func:`namecls.training.loop.train`;
    ``between_steps(where)``, if given, is called before training and after each step that follows it ("after
    training", "after the logit adjustment", "after the validation logits", "after the test logits"): an exception
    there abandons the run (:func:`namecls.fit`'s abort).
    """
    between_steps = between_steps or (lambda where: None)
    tconfig = train_config(kind, **(train_overrides or {}))
    mconfig = model_config(kind, len(labels), **(model_overrides or {}))
    torch.manual_seed(tconfig.seed)
    model = build(mconfig)
    train_names, train_targets = split.part("train")
    val_names, val_targets = split.part("val")
    test_names, test_targets = split.part("test")
    log.info("%s: %d parameters; %s split (seed %d): %s", kind.upper(), sum(p.numel() for p in model.parameters()),
             split.protocol, split.seed, split.sizes())
    between_steps("before training")
    start = time.perf_counter()
    model, history = train(model, train_names, train_targets, val_names, val_targets, tconfig, progress=progress,
                           hooks=hooks)
    between_steps("after training")
    # (adjust.fit_logit_adjustment and evaluation.predict_logits are looked up when called: tests wrap them)
    adjustment = (adjust.fit_logit_adjustment(model, train_targets, val_names, val_targets)
                  if tconfig.adjust_logits else None)
    seconds = time.perf_counter() - start
    between_steps("after the logit adjustment")
    val_logits = evaluation.predict_logits(model, val_names)
    between_steps("after the validation logits")
    test_logits = evaluation.predict_logits(model, test_names)
    between_steps("after the test logits")
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
        "validation": evaluation.score(val_targets, val_logits, labels),
        "test": evaluation.score(test_targets, test_logits, labels),
        "baselines": (evaluation.baselines(train_names, train_targets, test_names, test_targets, labels)
                      if with_baselines else {}),
    }
    return Trained(model, metrics, val_logits, test_logits)


def checkpoint_extra(data: NamesData, split: Split, metrics: dict) -> dict:
    """The training facts config.json records beside the architecture (the post-training fields come from
    :meth:`namecls.posthoc.parts.Posthoc.config_fields`)."""
    return {
        "protocol": split.protocol,
        "split_seed": split.seed,
        "data_fingerprint": data.fingerprint,
        "train_config": metrics["train_config"],
    }
