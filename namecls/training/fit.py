"""Train a classifier in memory with one call: :func:`fit`.

    >>> import namecls
    >>> clf = namecls.fit(time_budget=30)                      # a GRU on all 18 languages, about 30 s
    >>> clf.predict("Qin", k=3)
    >>> clf.save_zip("my-gru.zip"); namecls.load("my-gru.zip")  # the same answers

It trains on the clean protocol's train split (:func:`namecls.data.splits.make_split`; with ``languages``, that split
restricted to them, so a name's part is the same as in the full split), keeps the best weights on its validation
split, folds in the validation-chosen logit adjustment (as ``train.py`` does) and fits the fast post-training parts
(:func:`namecls.posthoc.parts.fit` with ``with_maps=False``: temperature, low-confidence rule, prediction sets and the
training-name table). The map, the explanation data and the novelty score are not fitted: those attributes are None.

Defaults come from :data:`FIT_DEFAULTS` (one :class:`FitConfig` per model kind), chosen for time to accuracy rather
than for the last point of accuracy (the committed checkpoints use :mod:`namecls.training.experiment`'s defaults).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint
from ..data.names import DATA_URL, fetch_names, holds_names, pad_batch, read_names, validate
from ..inference import Classifier
from ..recipes import FIT_DEFAULTS, FitConfig
from ..errors import InputError

# Training needs scikit-learn, pandas and tqdm (splits, evaluation, training): imported by fit() when it runs, so
# that ``import namecls`` stays as light as it was.

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_data_dir() -> Path:
    """Where :func:`find_or_download_data` keeps the names data it had to download: ``$XDG_CACHE_HOME/namecls/names``
    (``~/.cache/namecls/names`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "namecls" / "names"


def _holds_txt(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.txt"))


def default_data_dir() -> tuple[Path, str]:
    """The names folder :func:`fit` reads when given none, and where that choice came from: ``$NAMECLS_DATA_DIR``;
    else ``../shared/data/names`` beside the project; else, if it holds the data, :func:`cache_data_dir`."""
    env = os.environ.get("NAMECLS_DATA_DIR")
    if env:
        return Path(env), "$NAMECLS_DATA_DIR"
    beside = PROJECT_ROOT.parent / "shared" / "data" / "names"
    if not _holds_txt(beside) and holds_names(cache_data_dir()):
        return cache_data_dir(), "the copy downloaded into the cache"
    return beside, "the default beside the project"


def find_data(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` (or :func:`default_data_dir`) if it holds ``*.txt`` files; else FileNotFoundError saying how to
    get the data."""
    folder, origin = (Path(data_dir), "data_dir") if data_dir is not None else default_data_dir()
    if _holds_txt(folder):
        return folder
    raise FileNotFoundError(
        f"no names data in {folder} ({origin}): pass data_dir= a folder with one <Language>.txt per language, set "
        f"NAMECLS_DATA_DIR, or download it (SHA-256 checked) with namecls.data.names.download({str(folder)!r}) or "
        f"`python train.py --download --data-dir {folder}` (fetches {DATA_URL})")


def data_on_disk() -> bool:
    """Whether :func:`find_data` finds a names folder without any download."""
    try:
        find_data(None)
    except FileNotFoundError:
        return False
    return True


def find_or_download_data(timeout: float = 60.0) -> Path:
    """The names folder to train on: :func:`find_data`'s default if it holds the data; else, unless
    ``$NAMECLS_DATA_DIR`` names a folder (then its FileNotFoundError), the tutorial's archive downloaded once into
    :func:`cache_data_dir` and checked by SHA-256 (:func:`namecls.data.names.fetch_names`: a lock, a size cap, a
    timeout). A failed download raises RuntimeError saying what failed and how to do without it."""
    try:
        return find_data(None)
    except FileNotFoundError:
        if os.environ.get("NAMECLS_DATA_DIR"):
            raise
    try:
        return fetch_names(cache_data_dir(), timeout=timeout)
    except RuntimeError as err:
        raise RuntimeError(
            f"the names data is not on this server and fetching it failed: {err}. To fix it, set NAMECLS_DATA_DIR "
            f"to a folder with one <Language>.txt per language (data/names/ of {DATA_URL}) and restart, or let "
            f"the server reach download.pytorch.org.") from err


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
    """What train() checks between batches: set once ``stop`` or ``abort`` is (train() only calls is_set())."""

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

    - ``data_dir``: the names folder (default: ``$NAMECLS_DATA_DIR``, else ``../shared/data/names`` beside the
      project); a missing folder raises FileNotFoundError saying how to download it.
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
    ``val_accuracy`` / ``val_macro_f1``), ``history``, ``training_seconds`` and ``seconds`` (with the post-training
    fits), ``stopped_by`` ("epochs", "time_budget", "stop", "patience"), ``languages``, ``fit_config`` and the
    post-training reports; its ``source`` is None until saved.
    """
    from ..posthoc import parts as posthoc
    from ..posthoc.adjust import fit_logit_adjustment
    from .evaluation import predict_logits, score
    from .experiment import checkpoint_extra, model_config, train_config
    from ..models.networks import build
    from ..data.splits import make_split
    from .loop import train

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
    tconfig = train_config(kind, **config.train_fields(), seed=seed)
    mconfig = model_config(kind, len(chosen), **config.model_fields())
    torch.manual_seed(seed)
    model = build(mconfig)
    train_names, train_targets = split.part("train")
    val_names, val_targets = split.part("val")
    test_names, test_targets = split.part("test")

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

    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        check_abort("before training")
        start = time.perf_counter()
        halt = stop if abort is None else _EitherSet(stop, abort)
        model, history = train(model, train_names, train_targets, val_names, val_targets, tconfig, progress=False,
                               on_progress=forward, progress_every=config.progress_every, stop=halt,
                               time_budget=time_budget, on_epoch=look)
        training_seconds = time.perf_counter() - start
        check_abort("after training")
        adjustment = (fit_logit_adjustment(model, train_targets, val_names, val_targets)
                      if tconfig.adjust_logits else None)
        check_abort("after the logit adjustment")
        val_logits = predict_logits(model, val_names)
        check_abort("after the validation logits")
        test_logits = predict_logits(model, test_names)
        check_abort("after the test logits")
        fitted = posthoc.fit(model, chosen, split, val_logits, test_logits, with_maps=False)
    finally:
        torch.set_num_threads(threads)
    stopped_by = history[-1].get("stopped") or ("epochs" if len(history) >= tconfig.epochs else "patience")
    validation = score(val_targets, val_logits, chosen)
    metrics = {
        "model": kind,
        "trained_by": "namecls.fit",
        "protocol": split.protocol,
        "split_seed": split.seed,
        "split_sizes": split.sizes(),
        "languages": chosen,
        "fit_config": asdict(config),
        "train_config": asdict(tconfig),
        "time_budget": time_budget,
        "stopped_by": stopped_by,
        "training_seconds": training_seconds,
        "epochs_run": len(history),
        "best_epoch": max(history, key=lambda r: r[f"val_{tconfig.select_on}"])["epoch"],
        "history": history,
        "logit_adjustment": adjustment,
        "val_accuracy": validation["accuracy"],
        "val_macro_f1": validation["macro_f1"],
        "validation": validation,
        "test": score(test_targets, test_logits, chosen),
        **fitted.metrics,
    }
    extra = checkpoint_extra(data, split, metrics) | {"trained_by": "namecls.fit", "languages": chosen}
    classifier = Classifier(model, checkpoint.make_config(model, chosen, extra, fitted), metrics, None, fitted)
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

