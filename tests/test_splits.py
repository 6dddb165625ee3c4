"""The two evaluation protocols: the article's `seed` split and the `clean` grouped split."""

from __future__ import annotations

import numpy as np
import pytest

from namecls.data.names import NamesData
from namecls.data.splits import PROTOCOLS, make_split

from conftest import tiny_names

PARTS = ("train", "val", "test")


def _part_names(split, part):
    return {split.names[i] for i in getattr(split, part)}


def _assert_partition(split, n_rows):
    """train/val/test are disjoint, sorted, and together cover every row exactly once."""
    parts = [getattr(split, p) for p in PARTS]
    joined = np.concatenate(parts)
    assert len(joined) == n_rows == len(split.names) == len(split.targets)
    assert sorted(joined.tolist()) == list(range(n_rows))
    for idx in parts:
        assert len(idx) > 0


# --- seed protocol (the article's) -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_split(names_data):
    return make_split(names_data, "seed", 0)


def test_seed_split_sizes(seed_split):
    sizes = seed_split.sizes()
    assert sizes["train"] + sizes["val"] == 18_063
    assert sizes["test"] == 2_007
    assert sizes["val"] == pytest.approx(0.1 * 18_063, abs=1)
    _assert_partition(seed_split, 20_070)


def test_seed_split_keeps_all_rows_including_duplicates(names_data, seed_split):
    assert seed_split.names == names_data.names
    assert seed_split.targets == names_data.targets
    assert len(set(zip(seed_split.names, seed_split.targets))) < len(seed_split.names)  # duplicates are kept


def test_seed_split_is_stratified(seed_split):
    targets = np.asarray(seed_split.targets)
    total = np.bincount(targets, minlength=18)
    test = np.bincount(targets[seed_split.test], minlength=18)
    assert np.all(np.abs(test - 0.1 * total) <= 1), (test, total)
    rest = total - test
    val = np.bincount(targets[seed_split.val], minlength=18)
    assert np.all(np.abs(val - 0.1 * rest) <= 1), (val, rest)


def test_seed_split_is_deterministic(names_data, seed_split):
    again = make_split(names_data, "seed", 0)
    for part in PARTS:
        np.testing.assert_array_equal(getattr(again, part), getattr(seed_split, part))
    other = make_split(names_data, "seed", 1)
    assert other.sizes() == seed_split.sizes()
    assert not np.array_equal(other.test, seed_split.test)


def test_split_part_returns_names_and_targets(names_data, seed_split):
    names, targets = seed_split.part("test")
    assert len(names) == len(targets) == 2_007
    for i, name, target in zip(seed_split.test[:50], names, targets):
        assert names_data.names[i] == name and names_data.targets[i] == target


# --- clean protocol --------------------------------------------------------------------------------------------

def _check_clean(split, data: NamesData, seed: int):
    pairs = list(zip(split.names, split.targets))
    assert len(set(pairs)) == len(pairs), "clean split rows must be unique (name, label) pairs"
    assert set(pairs) == set(zip(data.names, data.targets)), "every distinct pair of the data is used"
    _assert_partition(split, len(pairs))
    train, val, test = (_part_names(split, p) for p in PARTS)
    assert not (train & val) and not (train & test) and not (val & test), "a name string is in two parts"
    n = len(pairs)
    sizes = split.sizes()
    assert sizes["train"] / n == pytest.approx(0.8, abs=0.02)
    assert sizes["val"] / n == pytest.approx(0.1, abs=0.02)
    assert sizes["test"] / n == pytest.approx(0.1, abs=0.02)
    targets = np.asarray(split.targets)
    for part in PARTS:
        present = set(targets[getattr(split, part)].tolist())
        assert present == set(range(len(data.labels))), f"a language is missing from {part}"
    assert split.protocol == "clean" and split.seed == seed


@pytest.fixture(scope="module")
def clean_split(names_data):
    return make_split(names_data, "clean", 0)


def test_clean_split_properties(names_data, clean_split):
    _check_clean(clean_split, names_data, 0)
    assert len(clean_split.names) < len(names_data.names)  # duplicates removed


def test_clean_split_is_stratified(clean_split):
    targets = np.asarray(clean_split.targets)
    total = np.bincount(targets, minlength=18)
    for part, share in (("test", 0.1), ("val", 0.1), ("train", 0.8)):
        counts = np.bincount(targets[getattr(clean_split, part)], minlength=18)
        assert np.all(np.abs(counts / total - share) <= 0.05), (part, counts / total)


def test_clean_split_is_deterministic(names_data, clean_split):
    again = make_split(names_data, "clean", 0)
    assert again.names == clean_split.names and again.targets == clean_split.targets
    for part in PARTS:
        np.testing.assert_array_equal(getattr(again, part), getattr(clean_split, part))
    other = make_split(names_data, "clean", 1)
    _check_clean(other, names_data, 1)
    assert _part_names(other, "test") != _part_names(clean_split, "test")


def _synthetic_data() -> NamesData:
    """Made-up names with duplicate rows and names shared between two languages (as the real data has)."""
    per_language = tiny_names()
    labels = sorted(per_language)
    names, targets = [], []
    for t, label in enumerate(labels):
        for name in per_language[label]:
            names.append(name)
            targets.append(t)
    for name in per_language[labels[0]][:8]:  # the same string in a second language
        names.append(name)
        targets.append(1)
    names += names[:30]  # duplicate rows
    targets += targets[:30]
    return NamesData(names, targets, labels, [], "synthetic")


def test_clean_split_on_synthetic_data():
    data = _synthetic_data()
    split = make_split(data, "clean", 3)
    _check_clean(split, data, 3)
    # A name carried by two languages keeps both its rows, in one part.
    shared = tiny_names()[data.labels[0]][0]
    rows = [i for i, n in enumerate(split.names) if n == shared]
    assert sorted(split.targets[i] for i in rows) == [0, 1]
    where = {p for p in PARTS for i in rows if i in set(getattr(split, p).tolist())}
    assert len(where) == 1


def test_seed_split_on_synthetic_data():
    data = _synthetic_data()
    split = make_split(data, "seed", 0)
    _assert_partition(split, len(data.names))
    assert split.sizes()["test"] == pytest.approx(0.1 * len(data.names), abs=1)


def test_unknown_protocol():
    assert set(PROTOCOLS) == {"clean", "seed"}
    with pytest.raises(ValueError, match="protocol"):
        make_split(_synthetic_data(), "random", 0)
