"""Saving and loading a whole checkpoint: the weights, config.json, metrics.json and every post-training part."""

from __future__ import annotations

import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError
from safetensors.torch import load_file

from ..data.names import ALPHABET, NORMALIZATION
from ..models.networks import Model, build, config_from_dict, config_to_dict
from .checks import check_config, parameter_count, probe
from .files import (CONFIG_FILE, FORMAT_VERSION, METRICS_FILE, WEIGHTS_FILE, check_finite, dump_json, fail,
                    read_json, save_tensors)
from .parts import part_files
from .swap import replace_folder, resolve


def versions() -> dict:
    return {"python": platform.python_version(),
            **{package: metadata.version(package) for package in ("torch", "numpy", "scikit-learn", "unidecode")}}


# config.json's fields that make_config writes itself (the rest come from ``extra``).
GENERATED_CONFIG_KEYS = ("format_version", "model", "alphabet", "labels", "normalization", "temperature",
                         "low_confidence", "versions")


def make_config(model: Model, labels: list[str], extra: dict, posthoc=None) -> dict:
    """The config.json that :func:`save` writes for ``model``: architecture, alphabet, labels, normalisation, the
    training facts of ``extra``, the post-training temperature and rule, and the package versions."""
    return {
        "format_version": FORMAT_VERSION,
        "model": config_to_dict(model.config),
        "alphabet": ALPHABET,
        "labels": list(labels),
        "normalization": NORMALIZATION,
        **extra,
        **(posthoc.config_fields() if posthoc is not None else {}),
        "versions": versions(),
    }


def save(folder: str | os.PathLike, model: Model, labels: list[str], extra: dict, metrics: dict,
         posthoc=None) -> Path:
    """Write ``model``, its metadata and its post-training fits as the checkpoint folder ``folder``.

    ``extra`` holds training facts (protocol, split seed, data fingerprint, training config) merged into config.json;
    ``posthoc`` (a :class:`namecls.posthoc.parts.Posthoc`, or None) adds its temperature and low-confidence rule to
    config.json and its parts as files. The folder is replaced as a whole (:func:`replace_folder`): afterwards it
    holds exactly the new set, a part the new set lacks is gone, and a crash at any step leaves the old set or the
    new one, never a mix.
    """
    folder = Path(folder)
    config = make_config(model, labels, extra, posthoc)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    files: dict[str, Callable[[Path], None]] = {WEIGHTS_FILE: save_tensors(tensors), **part_files(posthoc)}
    files[METRICS_FILE] = dump_json(metrics)
    files[CONFIG_FILE] = dump_json(config)
    replace_folder(folder.resolve() if folder.is_symlink() else folder, files)
    return folder


def recipe(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(architecture fields, training settings) that trained the checkpoint in ``folder``, read from its
    config.json: what ``train.py --like`` retrains with. Raises :class:`CheckpointError` if they are missing."""
    config_path = resolve(Path(folder)) / CONFIG_FILE
    if not config_path.is_file():
        raise fail(config_path, "file is missing")
    config = read_json(config_path, "config")
    try:
        architecture, settings = dict(config["model"]), dict(config["train_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise fail(config_path, f"no architecture or training settings recorded ({err})") from err
    return architecture, settings


def load(folder: str | os.PathLike) -> tuple[Model, dict, dict]:
    """Rebuild a model from ``folder``; return (model in eval mode, config dict, metrics dict).

    Raises :class:`CheckpointError` naming the file and what is wrong with it. When ``folder`` is missing because a
    save was interrupted mid-swap, reads the previous set put aside beside it (see :func:`replace_folder`).
    """
    folder = resolve(Path(folder))
    if not folder.is_dir():
        raise fail(folder / CONFIG_FILE, "checkpoint folder not found")
    config_path, weights_path, metrics_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE, folder / METRICS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise fail(path, "file is missing")
    config = read_json(config_path, "config")
    try:
        model_config = config_from_dict(config["model"])
        config["labels"]
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise fail(config_path, f"unreadable or incomplete config ({err})") from err
    if config.get("alphabet") != ALPHABET:
        raise fail(config_path, "alphabet differs from this version of namecls")
    check_config(config_path, config, model_config)
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise fail(weights_path, f"corrupt or truncated weights ({err})") from err
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    wanted, held = parameter_count(model_config), sum(math.prod(shape) for shape in found.values())
    if wanted > held:  # refused before building: a config.json must not allocate more than its weights file holds
        raise fail(weights_path, f"weights do not match config.json (its model has {wanted:,} numbers, the weights "
                                  f"{held:,})")
    try:
        model = build(model_config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise fail(config_path, f"invalid model hyperparameters ({err})") from err
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != found:
        diff = sorted(f"{k}: expected {expected.get(k)}, found {found.get(k)}"
                      for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        raise fail(weights_path, "weights do not match config.json (" + "; ".join(diff[:4]) + ")")
    check_finite(weights_path, tensors, "weights")
    model.load_state_dict(tensors)
    model.eval()
    probe(folder, model, float(config.get("temperature", 1.0)))
    metrics = {}
    if metrics_path.is_file():
        metrics = read_json(metrics_path, "metrics")
        if not isinstance(metrics, dict):
            raise fail(metrics_path, f"metrics must be a JSON object, not {type(metrics).__name__}")
    return model, config, metrics
