"""What config.json may hold, and the probe that ends every load: the checks that refuse a checkpoint this version
cannot trust, each with a :class:`~namecls.checkpoint.files.CheckpointError` that names the file."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..data.names import ALPHABET, NORMALIZATION, pad_batch
from ..models.networks import Model
from .files import FORMAT_VERSION, WEIGHTS_FILE, CheckpointError, fail

# The softmax temperature config.json may hold: well inside float32's normal range, so that logits / T stays finite
# (1e-300 is 0 in float32 and makes every probability NaN). Fitted temperatures lie in calibration's (0.05, 20).
TEMPERATURE_RANGE = (1e-3, 1e3)  # low <= T < high
# The integers of config.json's "model" section: (smallest, largest) allowed, both included. The caps are far above
# any model this project trains (the committed ones: hidden 512 / 256, embedding 64, 2 layers, 18 classes) and keep a
# hostile config.json from asking for gigabytes: MAX_PARAMETERS bounds the model they make, and the model is built only
# once its size equals the weights file's. vocab_size must be len(ALPHABET).
MODEL_LIMITS = {"num_classes": (2, 1000), "hidden_size": (1, 4096), "embedding_size": (1, 4096), "num_layers": (1, 16)}
MAX_PARAMETERS = 50_000_000  # 200 MB of float32; the committed models hold 0.3 M (rnn) and 0.7 M (gru)
# The probe that ends every load (:func:`probe`): these names run through the rebuilt model must give finite
# probabilities summing to 1 (within PROBE_TOLERANCE) after every character. After four names come the characters
# of ALPHABET in pieces of 12, so every input character's weights are read at least once; the whole probe is one
# batch of at most 12 steps, about 1 ms.
PROBE_NAMES = ("Smith", "Nguyen", "Tanaka", "Q", *(ALPHABET[i : i + 12] for i in range(0, len(ALPHABET), 12)))
PROBE_TOLERANCE = 1e-4  # |sum of the probabilities - 1|: float32 softmax rounding is ~1e-6 for 18 classes


def _is_int(value) -> bool:
    """An integer, and not a bool (JSON ``true`` parses as a bool, which Python counts as the int 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    """An int (not a bool) or a finite float (JSON ``NaN`` / ``Infinity`` parse as floats)."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _check_model_config(config_path: Path, model_config) -> None:
    """Refuse a field of config.json's ``model`` section of the wrong type or out of range (:data:`MODEL_LIMITS`,
    vocab_size = len(ALPHABET), dropout a finite number in [0, 1), learn_initial_state a bool)."""
    def refuse(field, expected):
        raise fail(config_path, f"model.{field} must be {expected}, not {_short(getattr(model_config, field))}")

    if not _is_int(model_config.vocab_size) or model_config.vocab_size != len(ALPHABET):
        refuse("vocab_size", f"{len(ALPHABET)} (the characters of ALPHABET)")
    for field, (low, high) in MODEL_LIMITS.items():
        if hasattr(model_config, field):
            value = getattr(model_config, field)
            if not _is_int(value) or not low <= value <= high:
                refuse(field, f"an integer from {low} to {high}")
    if hasattr(model_config, "dropout"):
        dropout = model_config.dropout
        if not _is_finite_number(dropout) or not 0 <= dropout < 1:
            refuse("dropout", "a finite number from 0 to below 1")
    if hasattr(model_config, "learn_initial_state") and not isinstance(model_config.learn_initial_state, bool):
        refuse("learn_initial_state", "true or false")
    if parameter_count(model_config) > MAX_PARAMETERS:
        raise fail(config_path, f"the model of config.json would hold {parameter_count(model_config):,} numbers, "
                                 f"more than the {MAX_PARAMETERS:,} this version loads "
                                 "(namecls.checkpoint.MAX_PARAMETERS)")


def parameter_count(model_config) -> int:
    """How many numbers the model of ``model_config`` holds (its state dict), computed without building it."""
    c = model_config
    V, H, C = c.vocab_size, c.hidden_size, c.num_classes
    if c.kind == "rnn":  # i2h (H, V+H) + bias, i2o (C, V+H) + bias, h0
        return (V + H) * H + H + (V + H) * C + C + H
    E = c.embedding_size  # embedding (V, E); per layer w_ih (3H, in), w_hh (3H, H), two biases (3H); head (C, H) + bias
    return V * E + sum(3 * H * ((E if i == 0 else H) + H) + 6 * H for i in range(c.num_layers)) + C * H + C


def _check_rule(config_path: Path, rule, num_classes: int) -> None:
    """Refuse a low-confidence rule that is not {score, threshold[, target_accuracy, rule]} with a finite threshold
    in the score's range ([0, 1] for the top probability, [0, ln num_classes] for the entropy)."""
    if not isinstance(rule, dict) or "threshold" not in rule:
        raise fail(config_path, f"low_confidence must be {{'score', 'threshold'}}, not {_short(rule)}")
    score = rule.get("score", "top_probability")
    if score not in ("top_probability", "entropy"):
        raise fail(config_path, f"low_confidence.score must be 'top_probability' or 'entropy', not {_short(score)}")
    high = 1.0 if score == "top_probability" else math.log(num_classes)
    threshold = rule["threshold"]
    if not _is_finite_number(threshold) or not 0 <= threshold <= high:
        raise fail(config_path, f"low_confidence.threshold must be a finite number from 0 to {high:g} (the range of "
                                 f"the {score.replace('_', ' ')}), not {_short(threshold)}")
    target = rule.get("target_accuracy", 0.5)
    if not _is_finite_number(target) or not 0 <= target <= 1:
        raise fail(config_path, f"low_confidence.target_accuracy must be a finite number from 0 to 1, not "
                                 f"{_short(target)}")
    if not isinstance(rule.get("rule", ""), str):
        raise fail(config_path, f"low_confidence.rule must be a sentence (a string), not {_short(rule['rule'])}")


def _check_facts(config_path: Path, config: dict) -> None:
    """Refuse a recorded training fact of the wrong type: format_version (this version's), normalization (this
    version's), protocol, split_seed, data_fingerprint, train_config and versions. Each may be absent."""
    def refuse(field, expected):
        raise fail(config_path, f"{field} must be {expected}, not {_short(config[field])}")

    if "format_version" in config and (not _is_int(config["format_version"])
                                       or config["format_version"] != FORMAT_VERSION):
        refuse("format_version", f"{FORMAT_VERSION} (the checkpoint format this version of namecls reads)")
    if "normalization" in config and config["normalization"] != NORMALIZATION:
        refuse("normalization", f"{NORMALIZATION!r} (this version of namecls's)")
    if "protocol" in config and not (isinstance(config["protocol"], str) and config["protocol"].strip()):
        refuse("protocol", "a non-empty string")
    if "split_seed" in config and not (_is_int(config["split_seed"]) and 0 <= config["split_seed"] < 1 << 32):
        refuse("split_seed", "an integer from 0 to 2**32 - 1")
    if "data_fingerprint" in config and not isinstance(config["data_fingerprint"], str):
        refuse("data_fingerprint", "a string")
    if "train_config" in config:
        settings = config["train_config"]
        if not isinstance(settings, dict) or not all(math.isfinite(v) for v in settings.values()
                                                     if isinstance(v, float)):
            refuse("train_config", "an object whose numbers are finite")
    if "versions" in config and not (isinstance(config["versions"], dict)
                                     and all(isinstance(v, str) for v in config["versions"].values())):
        refuse("versions", "an object of version strings")


def check_config(config_path: Path, config, model_config) -> None:
    """Refuse a config.json value of the wrong type or out of range: the ``model`` section, labels that are not
    num_classes distinct non-empty strings, a temperature outside TEMPERATURE_RANGE (or not a normal float32), a
    malformed low-confidence rule, and a training fact of the wrong type."""
    _check_model_config(config_path, model_config)
    num_classes = model_config.num_classes
    labels = config["labels"]
    if not isinstance(labels, list) or not all(isinstance(label, str) and label.strip() for label in labels):
        raise fail(config_path, f"labels must be a list of non-empty strings, not {_short(labels)}")
    if len(labels) != num_classes or len(set(labels)) != len(labels):
        raise fail(config_path, f"labels list {_short(labels)} does not match num_classes={num_classes} "
                                 "(or repeats a language)")
    temperature = config.get("temperature", 1.0)
    low, high = TEMPERATURE_RANGE
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not low <= temperature < high or not _normal_float32(temperature)):
        raise fail(config_path, f"temperature must be a number from {low:g} to below {high:g} (a normal float32), "
                                 f"not {_short(temperature)}")
    if config.get("low_confidence") is not None:
        _check_rule(config_path, config["low_confidence"], num_classes)
    _check_facts(config_path, config)


def probe(folder: Path, model: Model, temperature: float) -> None:
    """Refuse a model (in eval mode) whose calibrated probabilities for :data:`PROBE_NAMES`, after any of their
    characters, are not finite or do not sum to 1: weights that pass the finiteness check but overflow float32 (a
    1e38 in the head makes a logit infinite and every probability NaN)."""
    x, lengths = pad_batch(list(PROBE_NAMES))
    with torch.no_grad():
        probs = torch.softmax(model.steps(x, lengths).logits / temperature, dim=-1).double()  # (B, T, C)
    real = torch.arange(probs.shape[1]) < lengths[:, None]  # (B, T): the steps of each name, not its padding
    ok = torch.isfinite(probs).all(dim=-1) & ((probs.sum(dim=-1) - 1).abs() <= PROBE_TOLERANCE)  # (B, T)
    bad = [name for name, row in zip(PROBE_NAMES, (ok | ~real).all(dim=1).tolist()) if not row]
    if bad:
        shown = (f"all {len(bad)} probe names ({bad[0]!r}, {bad[1]!r}, ...)" if len(bad) == len(PROBE_NAMES)
                 else "the probe name(s) " + ", ".join(map(repr, bad)))
        raise CheckpointError(
            f"{folder}: its weights give non-finite probabilities (NaN or infinity, or not summing to 1) for "
            f"{shown}: {WEIGHTS_FILE} holds values too large for float32 arithmetic (temperature "
            f"{temperature:g}). Restore the checkpoint (git checkout -- {folder}) or retrain it with train.py."
        )


def _normal_float32(value: float) -> bool:
    import numpy as np

    as32 = np.float32(value)
    return bool(np.isfinite(as32)) and math.isfinite(float(value)) and bool(abs(as32) >= np.finfo(np.float32).tiny)


def _short(value, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"

