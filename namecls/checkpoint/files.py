"""A checkpoint's files: their names and caps, written durably, read back with checks.

Every reader here refuses what it cannot trust with a :class:`CheckpointError` that names the file and the fix
(:func:`fail`): a JSON file over its cap in :data:`JSON_MAX_BYTES` or nested deeper than :data:`JSON_MAX_DEPTH`,
a NaN or an infinity in a tensor.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from ..explain.projection import Projection
from ..explain.units import Explain
from ..posthoc.conformal import Conformal
from ..posthoc.novelty import Novelty
from ..posthoc.seen import TrainingNames

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.json", "model.safetensors", "metrics.json"
PROJECTION_TENSORS, PROJECTION_JSON = Projection.FILES
EXPLAIN_TENSORS, EXPLAIN_JSON = Explain.FILES
CONFORMAL_TENSORS, CONFORMAL_JSON = Conformal.FILES
NOVELTY_TENSORS, NOVELTY_JSON = Novelty.FILES
(TRAINING_NAMES_JSON,) = TrainingNames.FILES
FORMAT_VERSION = 1

# Largest JSON file load() reads, per file name (bytes; checked before reading). Each is at least 8x the committed
# checkpoints' file (sizes of checkpoints/gru and rnn in parentheses); training_names.json grows with the training
# split (20,074 names: 0.52 MB), explain.json with the reference bank. tests/test_checkpoint.py checks the margin.
JSON_MAX_BYTES = {
    CONFIG_FILE: 1 << 20,  # 1 MiB (1.6 kB)
    METRICS_FILE: 4 << 20,  # 4 MiB (45 kB)
    CONFORMAL_JSON: 1 << 20,  # 1 MiB (1.9 kB)
    NOVELTY_JSON: 1 << 20,  # 1 MiB (5.3 kB)
    PROJECTION_JSON: 8 << 20,  # 8 MiB (175 kB)
    EXPLAIN_JSON: 8 << 20,  # 8 MiB (279 kB)
    TRAINING_NAMES_JSON: 16 << 20,  # 16 MiB (520 kB)
}
JSON_MAX_DEPTH = 32  # nesting levels of any checkpoint JSON (the committed files have at most 5)


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete, corrupt, or disagrees with itself."""


def fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: {problem}. Restore the checkpoint (git checkout -- {path.parent}) or retrain it with train.py."
    )


def write_synced(path: Path, write) -> None:
    """Create ``path`` with ``write(path)`` and flush it to disk."""
    write(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (new files, renames) durable; a no-op where directories cannot be
    opened (Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Replace the single file ``path`` atomically (temporary file beside it, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write_synced(Path(tmp), write)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_tensors(tensors: dict) -> Callable[[Path], None]:
    """write(path) of a safetensors file holding ``tensors``."""
    return lambda path: save_file(tensors, path)


def dump_json(obj) -> Callable[[Path], None]:
    def write(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    return write


def check_finite(path: Path, tensors: dict, what: str) -> None:
    """Refuse a NaN or an infinity in any floating tensor of ``path``."""
    for key in sorted(tensors):
        value = tensors[key]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise fail(path, f"{what}: tensor {key!r} has {bad} non-finite value(s) (NaN or infinity)")


def _depth(value) -> int:
    """Nesting depth of a parsed JSON value (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def read_json(path: Path, what: str):
    """Parse the JSON file ``path``, refusing one over its size cap (:data:`JSON_MAX_BYTES`, checked before reading)
    or nested deeper than :data:`JSON_MAX_DEPTH` (a very deep file stops the parser with RecursionError)."""
    cap = JSON_MAX_BYTES.get(path.name, min(JSON_MAX_BYTES.values()))
    try:
        size = path.stat().st_size
        if size > cap:
            raise fail(path, f"{what} file is {size:,} bytes, more than the {cap:,} this version reads "
                              f"(namecls.checkpoint.JSON_MAX_BYTES)")
        with open(path, "rb") as f:
            raw = f.read(cap + 1)
        if len(raw) > cap:  # grew since stat()
            raise fail(path, f"{what} file is more than the {cap:,} bytes this version reads")
        value = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise fail(path, f"{what} is nested too deeply (more than {JSON_MAX_DEPTH} levels)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise fail(path, f"unreadable {what} ({err})") from err
    if _depth(value) > JSON_MAX_DEPTH:
        raise fail(path, f"{what} is nested too deeply ({_depth(value)} levels, at most {JSON_MAX_DEPTH})")
    return value

