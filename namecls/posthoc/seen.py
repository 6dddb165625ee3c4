"""Was this name in the training data? The training split's names with their languages, for an exact look-up.

A network that answers "Russian" for a name it was trained on as Russian has remembered it, not inferred it; the
app says so. Only the TRAINING split is stored (never validation or test names: those are what the scores are
measured on). Names are compared as normalised text (:func:`namecls.data.names.normalize`), exactly.

File: ``training_names.json``: ``{"names": [...], "languages": [[label index, ...], ...]}``, names sorted, each
once, with its languages in label order (a name can carry several: "Abel" is French and German).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

FORMAT_VERSION = 1


class TrainingNames:
    """The training split's distinct normalised names and their languages (label indices)."""

    def __init__(self, names: list[str], languages: list[list[int]], labels: list[str]):
        if len(names) != len(languages) or len(set(names)) != len(names):
            raise ValueError(f"{len(names)} names, {len(set(names))} distinct, {len(languages)} language lists: "
                             "one list per distinct name is needed")
        if any(not row or not all(isinstance(i, int) and 0 <= i < len(labels) for i in row) for row in languages):
            raise ValueError(f"a language list is empty or names a label outside 0 … {len(labels) - 1}")
        self.labels = list(labels)
        self._languages = dict(zip(names, (sorted(set(row)) for row in languages)))

    def __repr__(self) -> str:
        return f"TrainingNames(n={len(self)})"

    def __len__(self) -> int:
        return len(self._languages)

    def __eq__(self, other) -> bool:
        return isinstance(other, TrainingNames) and (self.labels, self._languages) == (other.labels, other._languages)

    def seen_as(self, text: str) -> list[str]:
        """The languages the normalised ``text`` had in the training split, in label order; [] when unseen."""
        return [self.labels[i] for i in self._languages.get(text, ())]

    # saved in a checkpoint as these files (namecls.checkpoint.parts.Part), JSON only
    FILES: ClassVar[tuple[str, ...]] = ("training_names.json",)
    LABEL: ClassVar[str] = "training names"

    def tensors(self) -> dict:
        """None to store beside the JSON: the table is its summary."""
        return {}

    @property
    def summary(self) -> dict:
        """What ``training_names.json`` holds."""
        names = sorted(self._languages)
        return {"format_version": FORMAT_VERSION, "fitted_on": "train", "labels": self.labels, "names": names,
                "languages": [self._languages[n] for n in names]}

    @classmethod
    def from_saved(cls, tensors: dict | None, summary: dict, config: dict) -> "TrainingNames":
        """Rebuild from :attr:`summary` for the checkpoint of ``config``; ``ValueError`` if it is malformed or for
        other labels. (``tensors``: the part protocol's; this part has none.)"""
        labels = config["labels"]
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
        if summary.get("labels") != list(labels):
            raise ValueError("its labels differ from config.json's")
        return cls(list(summary["names"]), [list(row) for row in summary["languages"]], labels)


def fit(names: list[str], targets, labels: list[str]) -> TrainingNames:
    """The table of the training ``names`` (normalised) and their ``targets``."""
    table: dict[str, set[int]] = {}
    for name, target in zip(names, np.asarray(targets).tolist()):
        table.setdefault(name, set()).add(int(target))
    return TrainingNames(list(table), [sorted(v) for v in table.values()], labels)
