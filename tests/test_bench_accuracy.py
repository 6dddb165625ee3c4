"""``bench/accuracy.py``'s seen/unseen breakdown (the seed protocol's leak, measured): hand-made examples, no
training."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest

from namecls.data.names import NamesData
from namecls.data.splits import make_split

from conftest import PROJECT_ROOT, tiny_names

sys.path.insert(0, str(PROJECT_ROOT))
from bench.accuracy import (SEEN_COLUMNS, SEEN_KINDS, languages_by_name, leak_points, seen_breakdown,  # noqa: E402
                            seen_kind_table, seen_kinds, seen_tables, set_correct, subset_macro_f1)

# Training: Abe (0), Bo (1) twice, Cy (2). Test rows: (Abe, 0) seen with its language, (Abe, 1) seen under
# another language, (Di, 0), (Ed, 1) and (Fa, 2) unseen, (Bo, 1) seen with its language.
TRAIN_NAMES, TRAIN_TARGETS = ["Abe", "Bo", "Cy", "Bo"], [0, 1, 2, 1]
TEST_NAMES, TEST_TARGETS = ["Abe", "Abe", "Di", "Ed", "Bo", "Fa"], [0, 1, 0, 1, 1, 2]
PREDICTIONS = [0, 0, 0, 0, 1, 1]


def test_seen_breakdown_by_hand():
    b = seen_breakdown(TEST_NAMES, TEST_TARGETS, PREDICTIONS, TRAIN_NAMES, TRAIN_TARGETS)
    assert b["seen"].tolist() == [True, True, False, False, True, False]
    assert (b["n_test"], b["n_seen"]) == (6, 3)
    assert b["seen_share"] == pytest.approx(3 / 6)
    assert b["seen_same_language_share"] == pytest.approx(2 / 6)  # (Abe, 1) is seen, but not as language 1
    # seen rows: Abe 0→0 right, Abe 1→0 wrong, Bo 1→1 right
    # unseen rows: Di 0→0 right, Ed 1→0 wrong, Fa 2→1 wrong
    assert b["accuracy_seen"] == pytest.approx(2 / 3)
    assert b["accuracy_unseen"] == pytest.approx(1 / 3)
    # seen, languages {0, 1}: F1(0) = 2·½·1/(½+1) = 2/3 (one false positive), F1(1) = 2·1·½/(1+½) = 2/3
    assert b["macro_f1_seen"] == pytest.approx(2 / 3)
    # unseen, languages {0, 1, 2}: F1(0) = 2/3 (Ed predicted 0), F1(1) = 0 (Fa predicted 1, Ed missed), F1(2) = 0
    assert b["macro_f1_unseen"] == pytest.approx(2 / 9)
    accuracy = np.mean(np.array(PREDICTIONS) == np.array(TEST_TARGETS))
    assert accuracy == pytest.approx(b["seen_share"] * b["accuracy_seen"]
                                     + (1 - b["seen_share"]) * b["accuracy_unseen"])
    assert leak_points({"accuracy": accuracy, **b}) == pytest.approx(0.5 - 1 / 3)  # 1/2 overall, 1/3 unseen


def test_seen_kinds_by_hand():
    kinds = seen_kinds(TEST_NAMES, TEST_TARGETS, TRAIN_NAMES, TRAIN_TARGETS)
    same, other, unseen = SEEN_KINDS
    assert kinds.tolist() == [same, other, unseen, unseen, same, unseen]
    b = seen_breakdown(TEST_NAMES, TEST_TARGETS, PREDICTIONS, TRAIN_NAMES, TRAIN_TARGETS)
    assert (kinds != unseen).tolist() == b["seen"].tolist()


def test_seen_is_by_name_string_exactly_and_ignores_the_language():
    b = seen_breakdown(["Abe", "abe", "Abe "], [2, 2, 2], [2, 2, 2], TRAIN_NAMES)
    assert b["seen"].tolist() == [True, False, False]  # compared as given: pass normalised names
    assert math.isnan(b["seen_same_language_share"])  # no training targets given


def test_an_empty_part_scores_nan_and_bad_lengths_are_refused():
    nothing_seen = seen_breakdown(["Di", "Ed"], [0, 1], [0, 0], TRAIN_NAMES, TRAIN_TARGETS)
    assert nothing_seen["seen_share"] == 0.0
    assert math.isnan(nothing_seen["accuracy_seen"]) and math.isnan(nothing_seen["macro_f1_seen"])
    assert nothing_seen["accuracy_unseen"] == 0.5
    all_seen = seen_breakdown(["Bo", "Cy"], [1, 2], [1, 2], TRAIN_NAMES, TRAIN_TARGETS)
    assert all_seen["seen_share"] == 1.0 and all_seen["accuracy_seen"] == 1.0
    assert math.isnan(all_seen["accuracy_unseen"])
    with pytest.raises(ValueError):
        seen_breakdown(["Bo"], [1, 2], [1, 2], TRAIN_NAMES)


def test_subset_macro_f1_averages_over_the_languages_present():
    assert subset_macro_f1(np.array([3, 3]), np.array([3, 3])) == 1.0  # not diluted by 17 absent languages
    assert subset_macro_f1(np.array([3, 3]), np.array([3, 5])) == pytest.approx(2 / 3)  # 5 still costs recall
    assert math.isnan(subset_macro_f1(np.array([], dtype=int), np.array([], dtype=int)))


def _tiny_with_duplicates() -> NamesData:
    names = tiny_names()
    rows = [(n, t) for t, lang in enumerate(names) for n in names[lang]]
    rows += rows[:60]  # duplicate lines, as the real data has them
    rows += [(n, 1) for n in names[sorted(names)[0]][:30]]  # and names filed under a second language
    return NamesData([n for n, _ in rows], [t for _, t in rows], sorted(names), [], "tiny")


@pytest.mark.parametrize("protocol", ["seed", "clean"])
def test_the_seed_split_leaks_and_the_clean_one_does_not(protocol):
    data = _tiny_with_duplicates()
    split = make_split(data, protocol, seed=0)
    test_names, test_targets = split.part("test")
    train_names, train_targets = split.part("train")
    b = seen_breakdown(test_names, test_targets, test_targets, train_names, train_targets)
    expected = [n in set(train_names) for n in test_names]
    assert b["seen"].tolist() == expected
    if protocol == "clean":
        assert b["seen_share"] == 0.0
    else:
        assert b["seen_share"] > 0.0  # 90 repeated names in 250 lines: some land in test with a twin in train


def test_seen_tables_report_the_leak_per_model():
    rows = []
    for split, (acc, unseen) in enumerate([(0.85, 0.82), (0.87, 0.83)]):
        for model in ("gru", "rnn", "tfidf_logreg"):
            rows.append({"split": split, "model": model, "n_test": 100, "accuracy": acc, "macro_f1": 0.5,
                         "n_seen": 20, "seen_share": 0.2, "seen_same_language_share": 0.15,
                         "accuracy_seen": (acc - 0.8 * unseen) / 0.2, "accuracy_unseen": unseen,
                         "macro_f1_seen": 0.6, "macro_f1_unseen": 0.45})
    table = pd.DataFrame(rows)
    assert set(SEEN_COLUMNS) <= set(table.columns)
    text = seen_tables(table)
    assert "3.50 ± 0.71" in text  # leak points per split: 3 and 4
    assert ("GRU: the 20% of test rows whose name is in training (any language) score 1.000, the unseen 80% 0.825: "
            "seen names move its 0.860 accuracy by +3.5 points.") in text
    assert "no seen/unseen columns" in seen_tables(table.drop(columns=["accuracy_seen"]))


def test_seen_kind_table_rebuilds_each_split_and_checks_its_rows():
    data = _tiny_with_duplicates()
    languages = languages_by_name(data.names, data.targets)
    frames = []
    for seed in (0, 1):
        split = make_split(data, "seed", seed)
        names, targets = split.part("test")
        for model in ("gru", "tfidf_logreg"):
            predicted = targets if model == "gru" else np.zeros_like(targets)
            frames.append(pd.DataFrame({"split": seed, "model": model, "name": names, "target": targets,
                                        "predicted": predicted,
                                        "set_correct": set_correct(names, predicted, languages)}))
    per_name = pd.concat(frames)
    text = seen_kind_table(per_name, data)
    gru = [line for line in text.splitlines() if line.strip().startswith("gru")]
    assert len(gru) == 3 and all("1.000 ± 0.000" in line for line in gru)  # always right, in every part
    lr_other = [line for line in text.splitlines() if "tfidf_logreg seen, other languages only" in line]
    assert len(lr_other) == 1 and "nan" not in lr_other[0]
    assert "GRU: exact repeats" in text and "add +0.00 points to its 1.000 accuracy" in text
    assert "it would score 1.000 ± 0.000." in text
    wrong = per_name.copy()
    wrong.loc[wrong.index[0], "name"] = "Nobody"
    with pytest.raises(ValueError):
        seen_kind_table(wrong, data)
