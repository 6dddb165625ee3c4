"""Cross-validation folds of the clean protocol (:func:`namecls.data.splits.make_folds`) and the set accuracy that
``bench/accuracy.py`` reports beside accuracy."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from namecls.data.names import NamesData
from namecls.data.splits import make_folds

from conftest import PROJECT_ROOT, tiny_names

sys.path.insert(0, str(PROJECT_ROOT))
from bench.accuracy import languages_by_name, set_accuracy, set_correct  # noqa: E402

N_FOLDS = 5


@pytest.fixture(scope="module")
def folds(names_data):
    return make_folds(names_data, N_FOLDS, seed=0)


def _names(split, part):
    return {split.names[i] for i in getattr(split, part)}


@pytest.mark.slow
def test_folds_cover_every_unique_pair_and_name_once(names_data, folds):
    pairs = sorted(set(zip(names_data.names, names_data.targets)))
    assert len(folds) == N_FOLDS
    for split in folds:
        assert list(zip(split.names, split.targets)) == pairs  # same rows in every fold, the clean protocol's
        assert split.protocol == "clean"
    test_rows = np.concatenate([split.test for split in folds])
    assert sorted(test_rows.tolist()) == list(range(len(pairs)))  # every pair in exactly one test part
    test_names = [_names(split, "test") for split in folds]
    assert sum(len(n) for n in test_names) == len(set(names_data.names))  # every name string in one test part
    for i in range(N_FOLDS):
        for j in range(i + 1, N_FOLDS):
            assert not test_names[i] & test_names[j], (i, j)


def test_each_fold_is_a_partition_disjoint_by_name(folds):
    for split in folds:
        parts = [getattr(split, p) for p in ("train", "val", "test")]
        assert sorted(np.concatenate(parts).tolist()) == list(range(len(split.names)))
        train, val, test = (_names(split, p) for p in ("train", "val", "test"))
        assert not train & val and not train & test and not val & test
        sizes = split.sizes()
        assert sizes["test"] == pytest.approx(len(split.names) / N_FOLDS, rel=0.02)
        assert sizes["val"] / (sizes["train"] + sizes["val"]) == pytest.approx(1 / 9, abs=0.01)  # train:val 8:1


def test_every_language_with_five_names_is_in_every_test_part(names_data, folds):
    distinct = {}
    for name, target in set(zip(names_data.names, names_data.targets)):
        distinct[target] = distinct.get(target, 0) + 1
    for split in folds:
        present = set(np.asarray(split.targets)[split.test].tolist())
        for target, count in distinct.items():
            if count >= 5:
                assert target in present, (names_data.labels[target], count)


def test_folds_are_stratified(folds):
    targets = np.asarray(folds[0].targets)
    total = np.bincount(targets, minlength=18)
    for split in folds:
        test = np.bincount(targets[split.test], minlength=18)
        assert np.all(np.abs(test - total / N_FOLDS) <= np.maximum(3, 0.05 * total)), (test, total)


@pytest.mark.slow
def test_folds_are_deterministic(names_data, folds):
    again = make_folds(names_data, N_FOLDS, seed=0)
    other = make_folds(names_data, N_FOLDS, seed=1)
    for a, b in zip(folds, again):
        for part in ("train", "val", "test"):
            assert np.array_equal(getattr(a, part), getattr(b, part))
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(folds, other))


def test_make_folds_rejects_one_fold(names_data):
    with pytest.raises(ValueError):
        make_folds(names_data, 1)


def test_folds_on_tiny_data_group_a_name_filed_twice():
    names = tiny_names()
    rows = [(n, t) for t, lang in enumerate(names) for n in names[lang]]
    shared = rows[0][0]
    rows.append((shared, 3))  # the same string filed under a second language
    data = NamesData([n for n, _ in rows], [t for _, t in rows], sorted(names), [], "tiny")
    folds = make_folds(data, 4, seed=0)
    holding = [k for k, split in enumerate(folds) if shared in _names(split, "test")]
    assert len(holding) == 1
    split = folds[holding[0]]
    assert sorted(split.targets[i] for i in split.test if split.names[i] == shared) == [0, 3]


def test_set_accuracy_by_hand():
    # "Smith" is filed under English (0) and Scottish (2), "Muller" under German (1) only; duplicates add nothing.
    names = ["Smith", "Smith", "Muller", "Smith", "Muller"]
    targets = [0, 2, 1, 0, 1]
    languages = languages_by_name(names, targets)
    assert languages == {"Smith": frozenset({0, 2}), "Muller": frozenset({1})}
    # test rows: (Smith, English), (Smith, Scottish), (Muller, German); the model says Scottish, Scottish, English
    test_names, predictions = ["Smith", "Smith", "Muller"], [2, 2, 0]
    assert (np.array(predictions) == np.array([0, 2, 1])).mean() == pytest.approx(1 / 3)  # plain accuracy
    assert set_correct(test_names, predictions, languages).tolist() == [True, True, False]
    assert set_accuracy(test_names, predictions, languages) == pytest.approx(2 / 3)
    assert set_accuracy(["Smith"], [1], languages) == 0.0


def test_set_accuracy_uses_every_language_in_the_data(names_data):
    languages = languages_by_name(names_data.names, names_data.targets)
    multi = [n for n, langs in languages.items() if len(langs) > 1]
    assert len(multi) > 100  # the README's "465 names carry more than one" language (clean pairs)
    name = multi[0]
    for target in languages[name]:
        assert set_accuracy([name], [target], languages) == 1.0
