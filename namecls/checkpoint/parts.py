"""The post-training parts a checkpoint carries beside its weights, and the one loop that writes and reads them.

Each part is a class that follows :class:`Part`: the files it is saved as, a label for errors, its JSON
(``summary``) and tensors, and ``from_saved``, which rebuilds it from them and checks it against the checkpoint's
config. :data:`PART_TYPES` lists them under their :class:`namecls.posthoc.parts.Posthoc` attribute; adding a part
is one class and one line here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import SavedPartError
from ..explain.projection import Projection
from ..explain.units import Explain
from ..posthoc.calibration import DEFAULT_RULE
from ..posthoc.conformal import Conformal
from ..posthoc.novelty import Novelty
from ..posthoc.parts import Posthoc
from ..posthoc.seen import TrainingNames
from .files import check_finite, dump_json, fail, read_json, save_tensors
from .swap import resolve


class Part(Protocol):
    """A fitted post-training part, as a checkpoint stores it."""

    FILES: ClassVar[tuple[str, ...]]  # (tensors file, JSON file), or (JSON file,) for a part without tensors
    LABEL: ClassVar[str]  # what an error message calls it

    @property
    def summary(self) -> dict:
        """The JSON file's content."""
        ...

    def tensors(self) -> dict[str, Any]:
        """The tensors file's content ({} for a JSON-only part)."""
        ...

    @classmethod
    def from_saved(cls, tensors: Any, summary: Any, config: dict) -> Any:
        """The part rebuilt from its files (tensors None for a JSON-only part) and checked against the checkpoint's
        ``config``; :class:`namecls.errors.SavedPartError` for a file at fault, ``KeyError``/``ValueError``/
        ``TypeError`` for a JSON that does not fit."""
        ...


# Posthoc attribute -> the part saved under it, in the order they are read.
PART_TYPES: dict[str, type[Part]] = {"conformal": Conformal, "training_names": TrainingNames,
                                     "projection": Projection, "explain": Explain, "novelty": Novelty}
METRICS_KEYS = ("calibration", "low_confidence", "conformal", "projection", "explain", "novelty")


def part_files(posthoc) -> dict[str, Callable[[Path], None]]:
    """{file name: write(path)} for every part ``posthoc`` holds (none for None)."""
    files: dict[str, Callable[[Path], None]] = {}
    for attribute, kind in PART_TYPES.items():
        part = getattr(posthoc, attribute, None)
        if part is None:
            continue
        if len(kind.FILES) == 2:
            files[kind.FILES[0]] = save_tensors({k: v.contiguous() for k, v in part.tensors().items()})
        files[kind.FILES[-1]] = dump_json(part.summary)
    return files


def read_part(folder: Path, kind: type[Part], config: dict):
    """The part ``kind`` saved in ``folder``, or None when none of its files is there. Raises
    :class:`~namecls.checkpoint.files.CheckpointError` naming the file when one is missing, unreadable, holds a
    non-finite tensor, or does not fit the other file or the model."""
    paths = [folder / name for name in kind.FILES]
    if not any(path.is_file() for path in paths):
        return None
    for path in paths:
        if not path.is_file():
            raise fail(path, f"file is missing ({kind.LABEL} needs both {' and '.join(kind.FILES)})")
    tensors = None
    if len(paths) == 2:
        try:
            tensors = load_file(paths[0])
        except (SafetensorError, OSError, ValueError) as err:
            raise fail(paths[0], f"corrupt or truncated {kind.LABEL} ({err})") from err
        check_finite(paths[0], tensors, kind.LABEL)
    summary = read_json(paths[-1], kind.LABEL)
    try:
        return kind.from_saved(tensors, summary, config)
    except SavedPartError as err:
        raise fail(folder / err.file, str(err)) from err
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise fail(paths[-1], f"malformed {kind.LABEL}, or not this checkpoint's ({err})") from err


def load_posthoc(folder: str | os.PathLike, config: dict, metrics: dict) -> Posthoc:
    """The checkpoint's :class:`namecls.posthoc.parts.Posthoc`: config.json's temperature and rule (defaults when
    absent: an uncalibrated checkpoint), each part of :data:`PART_TYPES` (None when its files are absent), and the
    metrics fields it reported."""
    folder = resolve(Path(folder))
    return Posthoc(
        temperature=float(config.get("temperature", 1.0)),
        low_confidence=dict(config.get("low_confidence") or DEFAULT_RULE),
        **{attribute: read_part(folder, kind, config) for attribute, kind in PART_TYPES.items()},
        metrics={k: metrics[k] for k in METRICS_KEYS if k in metrics},
    )
