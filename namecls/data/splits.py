"""The two evaluation protocols, each a deterministic function of the data and a seed.

- ``seed``: the article's protocol, a stratified 10% test split over all rows (duplicates included). A tenth of
  the remaining rows, stratified, is held out as validation for early stopping.
- ``clean``: unique (name, language) pairs, split 80/10/10 into train/validation/test, grouped by name string (no
  name is in two splits) and stratified by language as far as the grouping allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from .names import NamesData

PROTOCOLS = ("clean", "seed")


@dataclass
class Split:
    """Row indices into a :class:`NamesData` (after de-duplication for ``clean``) for each part."""

    protocol: str
    seed: int
    names: list[str]
    targets: list[int]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def part(self, which: str) -> tuple[list[str], np.ndarray]:
        """The names and target array of ``which`` in {'train', 'val', 'test'}."""
        idx = getattr(self, which)
        targets = np.asarray(self.targets)[idx]
        return [self.names[i] for i in idx], targets

    def sizes(self) -> dict[str, int]:
        return {p: int(len(getattr(self, p))) for p in ("train", "val", "test")}


def make_split(data: NamesData, protocol: str = "clean", seed: int = 0) -> Split:
    if protocol == "seed":
        return _seed_split(data, seed)
    if protocol == "clean":
        return _clean_split(data, seed)
    raise ValueError(f"unknown protocol {protocol!r}: choose one of {PROTOCOLS}")


def _seed_split(data: NamesData, seed: int) -> Split:
    rows = np.arange(len(data.names))
    targets = np.asarray(data.targets)
    rest, test = train_test_split(rows, test_size=0.1, stratify=targets, random_state=seed)
    train, val = train_test_split(rest, test_size=0.1, stratify=targets[rest], random_state=seed)
    return Split("seed", seed, data.names, data.targets, np.sort(train), np.sort(val), np.sort(test))


def _unique_pairs(data: NamesData) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """The data's unique (name, language) pairs as (names, targets), sorted, and each name's stratum: its rarest
    language (465 names carry more than one), which keeps the small languages represented in every part."""
    pairs = sorted(set(zip(data.names, data.targets)))
    names = [n for n, _ in pairs]
    targets = np.array([t for _, t in pairs])
    frequency = np.bincount(targets, minlength=len(data.labels))
    stratum_of: dict[str, int] = {}
    for name, target in pairs:
        if name not in stratum_of or frequency[target] < frequency[stratum_of[name]]:
            stratum_of[name] = int(target)
    return names, targets, stratum_of


def _clean_split(data: NamesData, seed: int) -> Split:
    # Split name strings, not rows, so no name is in two parts, stratified by each name's rarest language.
    names, targets, stratum_of = _unique_pairs(data)
    unique = sorted(stratum_of)
    strata = np.array([stratum_of[n] for n in unique])
    rest, test_names = train_test_split(unique, test_size=0.1, stratify=strata, random_state=seed)
    rest_strata = np.array([stratum_of[n] for n in rest])
    train_names, val_names = train_test_split(rest, test_size=1 / 9, stratify=rest_strata, random_state=seed)
    part_of = {**{n: 0 for n in train_names}, **{n: 1 for n in val_names}, **{n: 2 for n in test_names}}
    parts = np.array([part_of[n] for n in names])
    train, val, test = (np.flatnonzero(parts == k) for k in range(3))
    return Split("clean", seed, names, targets.tolist(), train, val, test)


def make_folds(data: NamesData, n_folds: int = 5, seed: int = 0) -> list[Split]:
    """``n_folds`` cross-validation splits of the clean protocol's unique (name, language) pairs.

    The test parts come from :class:`~sklearn.model_selection.StratifiedGroupKFold` grouped by name string and
    stratified by each name's rarest language (as the ``clean`` split does): every name is in exactly one test
    part, with all its languages. The rest of each fold is split 8:1 into train and validation over unique name
    strings, with the same stratification. Deterministic for ``seed``; each Split's ``seed`` is that seed.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, not {n_folds}")
    names, targets, stratum_of = _unique_pairs(data)
    pair_strata = np.array([stratum_of[n] for n in names])
    kfold = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for _, test in kfold.split(np.zeros(len(names)), pair_strata, groups=names):
        test_set = {names[i] for i in test}
        rest = sorted({n for n in names if n not in test_set})
        rest_strata = np.array([stratum_of[n] for n in rest])
        _, val_names = train_test_split(rest, test_size=1 / 9, stratify=rest_strata, random_state=seed)
        val_set = set(val_names)
        parts = np.array([2 if n in test_set else 1 if n in val_set else 0 for n in names])
        train, val, test = (np.flatnonzero(parts == k) for k in range(3))
        folds.append(Split("clean", seed, names, targets.tolist(), train, val, test))
    return folds
