"""Checkpoints: a folder with ``config.json``, ``model.safetensors`` and ``metrics.json``. No pickle.

``config.json`` carries everything needed to rebuild and trust the model: architecture and hyperparameters,
alphabet, labels in output order, normalisation, data fingerprint, protocol and split seed, package versions,
and (when fitted) the softmax ``temperature`` and the ``low_confidence`` rule (see :mod:`namecls.calibration`).
The other post-training fits (:class:`namecls.posthoc.Posthoc`) ride along, each optional:

- ``conformal.safetensors`` + ``conformal.json``: prediction sets (:mod:`namecls.conformal`);
- ``training_names.json``: the training split's names and languages (:mod:`namecls.seen`);
- ``projection.safetensors`` + ``projection.json``: the hidden-state map (:mod:`namecls.projection`);
- ``explain.safetensors`` + ``explain.json``: reference names, unit order and contexts (:mod:`namecls.explain`);
- ``novelty.safetensors`` + ``novelty.json``: the "from elsewhere" score (``namecls.novelty``).

Every file is written atomically (temporary file, then rename), so an interrupted run leaves the old one intact;
:func:`save` writes the whole set, config.json last.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .data import ALPHABET, NORMALIZATION
from .models import build, config_from_dict, config_to_dict

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.json", "model.safetensors", "metrics.json"
PROJECTION_TENSORS, PROJECTION_JSON = "projection.safetensors", "projection.json"
EXPLAIN_TENSORS, EXPLAIN_JSON = "explain.safetensors", "explain.json"
CONFORMAL_TENSORS, CONFORMAL_JSON = "conformal.safetensors", "conformal.json"
NOVELTY_TENSORS, NOVELTY_JSON = "novelty.safetensors", "novelty.json"
TRAINING_NAMES_JSON = "training_names.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete, corrupt, or disagrees with itself."""


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    _atomic_write(path, write)


def versions() -> dict:
    return {"python": platform.python_version(),
            **{package: metadata.version(package) for package in ("torch", "numpy", "scikit-learn", "unidecode")}}


def save(folder: str | os.PathLike, model: torch.nn.Module, labels: list[str], extra: dict, metrics: dict,
         posthoc=None) -> Path:
    """Write ``model``, its metadata and its post-training fits into ``folder`` (created if needed).

    ``extra`` holds training facts (protocol, split seed, data fingerprint, training config) merged into config.json;
    ``posthoc`` (a :class:`namecls.posthoc.Posthoc`, or None) adds its temperature and low-confidence rule to
    config.json and its parts as files. Every file of the set is rewritten, and a part the new set lacks is
    removed, so no stale file of an older set survives. Weights go first and config last, so a loader never pairs
    a new config with old weights after a crash.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "model": config_to_dict(model.config),
        "alphabet": ALPHABET,
        "labels": list(labels),
        "normalization": NORMALIZATION,
        **extra,
        **(posthoc.config_fields() if posthoc is not None else {}),
        "versions": versions(),
    }
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    for attribute, files in PARTS.items():
        part = getattr(posthoc, attribute, None)
        if part is None:
            for stale in files:
                (folder / stale).unlink(missing_ok=True)
        elif len(files) == 2:
            _save_pair(folder, part, *files)
        else:
            write_json(folder / files[0], part.summary)
    write_json(folder / METRICS_FILE, metrics)
    write_json(folder / CONFIG_FILE, config)
    return folder


# Posthoc attribute -> its files: (tensors, json) written from .tensors() and .summary, or (json,) from .summary.
PARTS = {"conformal": (CONFORMAL_TENSORS, CONFORMAL_JSON), "training_names": (TRAINING_NAMES_JSON,),
         "projection": (PROJECTION_TENSORS, PROJECTION_JSON), "explain": (EXPLAIN_TENSORS, EXPLAIN_JSON),
         "novelty": (NOVELTY_TENSORS, NOVELTY_JSON)}


def _save_pair(folder: Path, part, tensors_file: str, json_file: str) -> None:
    tensors = {k: v.contiguous() for k, v in part.tensors().items()}
    _atomic_write(folder / tensors_file, lambda tmp: save_file(tensors, tmp))
    write_json(folder / json_file, part.summary)


def _read_pair(folder: Path, tensors_file: str, json_file: str, what: str):
    """(tensors, summary) of an optional pair of files, or None when neither is there; both must be readable."""
    tensors_path, json_path = folder / tensors_file, folder / json_file
    if not tensors_path.is_file() and not json_path.is_file():
        return None
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise _fail(path, f"file is missing ({what} needs both {tensors_file} and {json_file})")
    try:
        tensors = load_file(tensors_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(tensors_path, f"corrupt or truncated {what} ({err})") from err
    return tensors, _read_json(json_path, what)


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise _fail(path, f"unreadable {what} ({err})") from err


def load_conformal(folder: str | os.PathLike, config: dict):
    """The checkpoint's prediction sets (:class:`namecls.conformal.Conformal`), or None if it has none."""
    from .conformal import Conformal

    folder = Path(folder)
    pair = _read_pair(folder, CONFORMAL_TENSORS, CONFORMAL_JSON, "prediction-set data")
    if pair is None:
        return None
    try:
        return Conformal.from_saved(*pair)
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise _fail(folder / CONFORMAL_JSON, f"prediction-set data do not fit together ({err})") from err


def load_training_names(folder: str | os.PathLike, config: dict):
    """The checkpoint's training-name table (:class:`namecls.seen.TrainingNames`), or None if it has none."""
    from .seen import TrainingNames

    path = Path(folder) / TRAINING_NAMES_JSON
    if not path.is_file():
        return None
    try:
        return TrainingNames.from_saved(_read_json(path, "training names"), config["labels"])
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise _fail(path, f"malformed training names ({err})") from err


def load_novelty(folder: str | os.PathLike, config: dict):
    """The checkpoint's novelty score (``namecls.novelty.Novelty``), or None if it has none."""
    folder = Path(folder)
    pair = _read_pair(folder, NOVELTY_TENSORS, NOVELTY_JSON, "novelty data")
    if pair is None:
        return None
    from .novelty import Novelty  # only a checkpoint with novelty files needs the module

    try:
        return Novelty.from_saved(*pair)
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise _fail(folder / NOVELTY_JSON, f"novelty data do not fit together ({err})") from err


def load_posthoc(folder: str | os.PathLike, config: dict, metrics: dict):
    """The checkpoint's :class:`namecls.posthoc.Posthoc`: config.json's temperature and rule (defaults when absent:
    an uncalibrated checkpoint), each part's files (None when absent), and the metrics fields it reported."""
    from .calibration import DEFAULT_RULE
    from .posthoc import Posthoc

    return Posthoc(
        temperature=float(config.get("temperature", 1.0)),
        low_confidence=dict(config.get("low_confidence") or DEFAULT_RULE),
        conformal=load_conformal(folder, config),
        training_names=load_training_names(folder, config),
        projection=load_projection(folder, config),
        explain=load_explain(folder, config),
        novelty=load_novelty(folder, config),
        metrics={k: metrics[k] for k in METRICS_KEYS if k in metrics},
    )


METRICS_KEYS = ("calibration", "low_confidence", "conformal", "projection", "explain", "novelty")


def load_projection(folder: str | os.PathLike, config: dict):
    """The checkpoint's hidden-state map (:class:`namecls.projection.Projection`), or None if it has none.

    Raises :class:`CheckpointError` when only one of the two files is there, or either is corrupt or does not fit
    the model of ``config``.
    """
    from .projection import Projection, check_summary

    folder = Path(folder)
    tensors_path, json_path = folder / PROJECTION_TENSORS, folder / PROJECTION_JSON
    if not tensors_path.is_file() and not json_path.is_file():
        return None
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise _fail(path, "file is missing (the hidden-state map needs both projection files)")
    try:
        tensors = load_file(tensors_path)
        projection = Projection(tensors["mean"].numpy(), tensors["components"].numpy(), {})
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        raise _fail(tensors_path, f"corrupt or incomplete projection ({err})") from err
    try:
        summary = json.loads(json_path.read_text(encoding="utf-8"))
        check_summary(summary, projection.hidden_size, config["labels"])
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as err:
        raise _fail(json_path, f"unreadable projection summary ({err})") from err
    if projection.hidden_size != config["model"]["hidden_size"]:
        raise _fail(tensors_path, f"projection is for hidden size {projection.hidden_size}, the model has "
                                  f"{config['model']['hidden_size']}")
    projection.summary = summary
    return projection


def load_explain(folder: str | os.PathLike, config: dict):
    """The checkpoint's explanation data (:class:`namecls.explain.Explain`), or None if it has none.

    Raises :class:`CheckpointError` when only one of the two files is there, or either is corrupt or does not fit
    the model of ``config`` or the other file.
    """
    from .explain import Explain, check_summary

    folder = Path(folder)
    tensors_path, json_path = folder / EXPLAIN_TENSORS, folder / EXPLAIN_JSON
    if not tensors_path.is_file() and not json_path.is_file():
        return None
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise _fail(path, "file is missing (the explanation data needs both explain files)")
    try:
        arrays = {k: v.numpy() for k, v in load_file(tensors_path).items()}
        shape = Explain(arrays, {}).unit_order.shape  # checks the arrays against each other
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as err:
        raise _fail(tensors_path, f"corrupt or incomplete explanation data ({err})") from err
    expected = (config["model"].get("num_layers", 1), config["model"]["hidden_size"])
    if shape != expected:
        raise _fail(tensors_path, f"explanation data is for (layers, units) {shape}, the model has {expected}")
    try:
        summary = json.loads(json_path.read_text(encoding="utf-8"))
        check_summary(summary, config)
        explain = Explain(arrays, summary)  # checks the name lists against the arrays
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as err:
        raise _fail(json_path, f"unreadable explanation summary ({err})") from err
    return explain


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: {problem}. Restore the checkpoint (git checkout -- {path.parent}) or retrain it with train.py."
    )


def load(folder: str | os.PathLike) -> tuple[torch.nn.Module, dict, dict]:
    """Rebuild a model from ``folder``; return (model in eval mode, config dict, metrics dict).

    Raises :class:`CheckpointError` naming the file and what is wrong with it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise _fail(folder / CONFIG_FILE, "checkpoint folder not found")
    config_path, weights_path, metrics_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE, folder / METRICS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise _fail(path, "file is missing")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        model_config = config_from_dict(config["model"])
        labels = config["labels"]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise _fail(config_path, f"unreadable or incomplete config ({err})") from err
    if config.get("alphabet") != ALPHABET:
        raise _fail(config_path, "alphabet differs from this version of namecls")
    if not isinstance(labels, list) or len(labels) != model_config.num_classes or len(set(labels)) != len(labels):
        raise _fail(config_path, f"labels list {labels!r} does not match num_classes={model_config.num_classes}")
    temperature = config.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < 1e3:
        raise _fail(config_path, f"temperature must be a positive number, not {temperature!r}")
    rule = config.get("low_confidence")
    if rule is not None and not (isinstance(rule, dict) and isinstance(rule.get("threshold"), (int, float))
                                 and rule.get("score", "top_probability") in ("top_probability", "entropy")):
        raise _fail(config_path, f"low_confidence must be {{'score', 'threshold'}}, not {rule!r}")
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(weights_path, f"corrupt or truncated weights ({err})") from err
    try:
        model = build(model_config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise _fail(config_path, f"invalid model hyperparameters ({err})") from err
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(f"{k}: expected {expected.get(k)}, found {found.get(k)}"
                      for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        raise _fail(weights_path, "weights do not match config.json (" + "; ".join(diff[:4]) + ")")
    model.load_state_dict(tensors)
    model.eval()
    metrics = {}
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _fail(metrics_path, f"unreadable metrics ({err})") from err
    return model, config, metrics
