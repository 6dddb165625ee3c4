"""Train a classifier in memory with one call: :func:`fit`.

    >>> import namecls
    >>> clf = namecls.fit(time_budget=30)                      # a GRU on all 18 languages, about 30 s
    >>> clf.predict("Qin", k=3)
    >>> clf.save_zip("my-gru.zip"); namecls.load("my-gru.zip")  # the same answers

It trains on the clean protocol's train split (:func:`namecls.data.splits.make_split`; with ``languages``, that split
restricted to them, so a name's part is the same as in the full split) through ``train.py``'s pipeline
(:func:`namecls.training.experiment.run`: the best weights on validation, the validation-chosen logit adjustment
folded in, the validation and test scores), then fits the fast post-training parts
(:func:`namecls.training.posthoc.fit` with ``with_maps=False``: temperature, low-confidence rule, prediction sets and
the training-name table). The map, the explanation data and the novelty score are not fitted: those attributes are None.

Defaults come from :data:`FIT_DEFAULTS` (one :class:`FitConfig` per model kind), chosen for time to accuracy rather
than for the last point of accuracy (the committed checkpoints use the default recipe, :mod:`namecls.recipes`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from .. import checkpoint
from ..data.names import find_data, pad_batch, read_names, validate
from ..inference import Classifier
from ..recipes import FIT_DEFAULTS, FitConfig
from ..errors import InputError

# Training needs scikit-learn, pandas and tqdm (splits, evaluation, training): imported by fit() when it runs, so
# that ``import namecls`` stays as light as it was.

def choose_languages(labels: list[str], languages) -> list[str]:
    """The chosen labels in the data's order (all of them when ``languages`` is None); ValueError listing the
    choices for an unknown name, a repeated one, or fewer than two."""
    if languages is None:
        return list(labels)
    if isinstance(languages, str) or not all(isinstance(x, str) for x in languages):
        raise InputError(f"languages must be a list of language names, not {languages!r}; choose from "
                         f"{', '.join(labels)}")
    languages = list(languages)
    unknown = [x for x in languages if x not in labels]
    if unknown:
        raise InputError(f"unknown language(s) {', '.join(map(repr, unknown))}: choose from {', '.join(labels)}")
    if len(set(languages)) != len(languages):
        raise InputError(f"languages repeats a name: {languages}")
    if len(languages) < 2:
        raise InputError(f"choose at least 2 languages, not {len(languages)}; from {', '.join(labels)}")
    return [label for label in labels if label in set(languages)]


def restrict(split, labels: list[str], chosen: list[str]):
    """``split`` with only the rows of the ``chosen`` languages, their targets renumbered in ``chosen``'s order.
    Each remaining row stays in its part."""
    new_index = {labels.index(label): i for i, label in enumerate(chosen)}
    rows = [i for i, t in enumerate(split.targets) if t in new_index]
    position = {old: new for new, old in enumerate(rows)}
    parts = [np.array([position[i] for i in getattr(split, part) if i in position], dtype=np.int64)
             for part in ("train", "val", "test")]
    return type(split)(split.protocol, split.seed, [split.names[i] for i in rows],
                 [new_index[split.targets[i]] for i in rows], *parts)


class FitAborted(Exception):
    """:func:`fit`'s ``abort`` event was set: training ended early and no model was made (the caller has gone)."""


class _EitherSet:
    """What train() checks between batches (``Hooks.stop``): set once ``stop`` or ``abort`` is (train() only calls
    is_set())."""

    def __init__(self, *events):
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)


def _check_overrides(overrides: dict, time_budget) -> None:
    for key in ("hidden_size", "num_layers", "epochs", "batch_size"):
        value = overrides.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InputError(f"{key} must be a positive whole number, not {value!r}")
    for key, value in (("lr", overrides.get("lr")), ("time_budget", time_budget)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not np.isfinite(value) or value <= 0):
            raise InputError(f"{key} must be a positive number, not {value!r}")


def fit(data_dir: str | os.PathLike | None = None, kind: str = "gru", languages: list[str] | None = None,
        hidden_size: int | None = None, num_layers: int | None = None, lr: float | None = None,
        epochs: int | None = None, time_budget: float | None = None, seed: int = 0, on_progress=None, stop=None,
        batch_size: int | None = None, watch: str | None = None, abort=None) -> Classifier:
    """Train a ``kind`` ("gru" or "rnn") classifier in memory and return it, ready to predict, trace and save.

    - ``data_dir``: the names folder (default: :func:`namecls.data.names.find_data`'s, as ``train.py``'s:
      ``$NAMECLS_DATA_DIR``; else the first of ``data/names``, ``../shared/data/names`` beside the project and the
      download cache that holds it); a missing folder raises FileNotFoundError saying how to download it.
    - ``languages``: label names to train on (at least 2; default all), kept in the data's order; an unknown name
      raises ValueError listing the choices.
    - ``hidden_size``, ``num_layers``, ``lr``, ``epochs``, ``batch_size``: override :data:`FIT_DEFAULTS[kind]`.
    - ``seed``: the clean split's seed, the initial weights and the batch order (as ``train.py --seed``). With a
      fixed seed and no time budget or stop event, the result is the same every run (training runs on
      ``FitConfig.threads`` torch threads, 1 by default; the process's setting is restored afterwards, so other
      threads of the process computing meanwhile share that setting while fit() runs).
    - Training stops at the epoch limit, after ``time_budget`` seconds (checked between batches; the learning-rate
      schedule then spans the budget), when ``stop`` (a ``threading.Event``) is set (checked between batches), or
      after ``patience`` epochs without a better validation accuracy. The best weights on validation are kept;
      the budget covers training, not the post-training fits that follow (about a second or two).
    - ``on_progress(info)`` is called every ``progress_every`` (200) batches and after each epoch with ``info`` =
      {epoch, batches, loss (running mean of the epoch), val_accuracy (None between epochs), seconds, fraction
      (0–1, of the time budget or of the epochs, whichever is further), final: False}, and once at the end with
      final True, fraction 1, the returned model's val_accuracy and ``stopped_by``.
    - ``watch``: a name; each epoch's ``info`` then also holds ``watch`` = [(language, probability)] × 3, the
      current weights' top three for it (uncalibrated: the temperature is fitted after training).
    - ``abort``: a ``threading.Event`` for a caller that no longer wants the model (the app's page was closed).
      Once set, training stops before the next batch (as ``stop``), the post-training fits are skipped (it is
      checked before training and between them too) and fit raises :class:`FitAborted`. From the set to the
      raise: at most one batch, a stopped epoch's validation pass and one post-training step (each at most ~0.3 s
      at the app's largest settings, a 2×256 GRU on all 18 languages). Not interruptible: the first fit of a
      process imports scikit-learn and torch's compiler first (~4 s, once).

    The classifier's ``metrics`` hold the validation and test scores (``validation``, ``test``, and
    ``val_accuracy`` / ``val_macro_f1``), ``history``, ``training_seconds`` (training and the logit adjustment) and
    ``seconds`` (with the post-training fits), ``stopped_by`` ("epochs", "time_budget", "stop", "patience"),
    ``languages``, ``fit_config`` and the post-training reports; its ``source`` is None until saved.
    """
    from . import posthoc
    from .experiment import checkpoint_extra, run
    from ..data.splits import make_split
    from .loop import Hooks

    def check_abort(where: str) -> None:
        if abort is not None and abort.is_set():
            raise FitAborted(f"aborted {where}")

    started = time.perf_counter()
    if kind not in FIT_DEFAULTS:
        raise InputError(f"kind must be one of {', '.join(map(repr, FIT_DEFAULTS))}, not {kind!r}")
    overrides: dict[str, Any] = {"hidden_size": hidden_size, "num_layers": num_layers, "lr": lr, "epochs": epochs,
                                 "batch_size": batch_size}  # any values: _check_overrides checks them
    _check_overrides(overrides, time_budget)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be a whole number, not {seed!r}")
    config = replace(FIT_DEFAULTS[kind], **{k: v for k, v in overrides.items() if v is not None})
    data = read_names(find_data(data_dir))
    chosen = choose_languages(data.labels, languages)
    split = make_split(data, "clean", seed)
    if chosen != data.labels:
        split = restrict(split, data.labels, chosen)

    last, watched = {}, {}
    watch_text = None if watch is None else validate(watch).text

    def look(row, current):
        """After each epoch: the current weights' answer for the watched name."""
        if watch_text is None:
            return
        was_training = current.training
        current.eval()
        with torch.inference_mode():
            x, lengths = pad_batch([watch_text])
            probs = torch.softmax(current(x, lengths), dim=-1)[0]  # (C,)
        current.train(was_training)
        watched["watch"] = [(chosen[i], float(probs[i])) for i in probs.argsort(descending=True)[:3].tolist()]

    def forward(info):
        if info.get("val_accuracy") is not None and not info.get("final"):
            info = {**info, **watched}
        last.update(info)
        if on_progress is not None:
            on_progress(info)

    hooks = Hooks(on_epoch=look, on_progress=forward, progress_every=config.progress_every,
                  stop=stop if abort is None else _EitherSet(stop, abort), time_budget=time_budget)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        start = time.perf_counter()
        trained = run(kind, chosen, split, config.model_fields(), config.train_fields() | {"seed": seed},
                      with_baselines=False, progress=False, hooks=hooks, between_steps=check_abort)
        fitted = posthoc.fit(trained.model, chosen, split, trained.val_logits, trained.test_logits,
                             with_maps=False)
    finally:
        torch.set_num_threads(threads)
    done = trained.metrics
    history = done["history"]
    stopped_by = history[-1].get("stopped") or ("epochs" if len(history) >= done["train_config"]["epochs"]
                                                else "patience")
    validation = done["validation"]
    metrics = {  # run()'s metrics (but its empty baselines) and fit's own, in the order metrics.json shows them
        "model": kind,
        "trained_by": "namecls.fit",
        **{k: done[k] for k in ("protocol", "split_seed", "split_sizes")},
        "languages": chosen,
        "fit_config": asdict(config),
        "train_config": done["train_config"],
        "time_budget": time_budget,
        "stopped_by": stopped_by,
        **{k: done[k] for k in ("training_seconds", "epochs_run", "best_epoch", "history", "logit_adjustment")},
        "val_accuracy": validation["accuracy"],
        "val_macro_f1": validation["macro_f1"],
        "validation": validation,
        "test": done["test"],
        **fitted.metrics,
    }
    extra = checkpoint_extra(data, split, metrics) | {"trained_by": "namecls.fit", "languages": chosen}
    classifier = Classifier(trained.model, checkpoint.make_config(trained.model, chosen, extra, fitted), metrics,
                            None, fitted)
    metrics["seconds"] = time.perf_counter() - started
    forward({"epoch": len(history), "batches": last.get("batches", 0), "loss": last.get("loss"),
             "val_accuracy": validation["accuracy"], "seconds": time.perf_counter() - start, "fraction": 1.0,
             "final": True, "stopped_by": stopped_by})
    return classifier


__all__ = ["FIT_DEFAULTS", "FitAborted", "FitConfig", "fit"]


def validation_accuracy(classifier: Classifier, languages: list[str], data_dir: str | os.PathLike | None = None,
                        seed: int = 0) -> float:
    """Accuracy of ``classifier`` on the clean split's validation names of ``languages`` (the names :func:`fit`
    validates on with that seed), its answer restricted to those languages: how a model trained on all 18 does on
    the question a smaller model was trained for. The committed checkpoints never trained on these names."""
    from .evaluation import predict_logits
    from ..data.splits import make_split

    data = read_names(find_data(data_dir))
    chosen = choose_languages(data.labels, languages)
    names, targets = restrict(make_split(data, "clean", seed), data.labels, chosen).part("val")
    columns = [classifier.labels.index(label) for label in chosen]  # ValueError if the model lacks one
    guesses = predict_logits(classifier.model, names)[:, columns].argmax(axis=1)
    return float((guesses == np.asarray(targets)).mean())

