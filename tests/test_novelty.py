"""namecls.posthoc.novelty: the n-gram model against hand counts, the stored form, determinism, and the dev-set
AUROC."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import namecls
from bench.novelty import mix_nll
from namecls.posthoc import novelty as nv

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded

DEV = Path(__file__).resolve().parent.parent / "bench" / "data" / "novelty-dev.csv"


def test_bigram_probabilities_match_a_hand_count():
    # Corpus "ab", "ac", order 2, D = 0.5. Padded: <s> a b </s>, <s> a c </s>.
    lm = nv.CharNGram.fit(["ab", "ac"], order=2, discount=0.5)
    V = nv.PREDICTED
    # Unigram continuation counts: a 1 (after <s>), b 1, c 1 (after a), </s> 2 (after b and c): total 5, 4 types.
    p1 = {w: max(c - 0.5, 0) / 5 + 0.5 * 4 / 5 / V for w, c in {"a": 1, "b": 1, "c": 1, "</s>": 2}.items()}
    p1["z"] = 0.5 * 4 / 5 / V
    # Bigram raw counts after "a": b 1, c 1 (total 2, 2 types); after <s>: a 2 (total 2, 1 type).
    p_b_after_a = (1 - 0.5) / 2 + 0.5 * 2 / 2 * p1["b"]
    p_a_after_bos = (2 - 0.5) / 2 + 0.5 * 1 / 2 * p1["a"]
    p_end_after_b = (1 - 0.5) / 1 + 0.5 * 1 / 1 * p1["</s>"]
    logp = lm.logprobs(["ab"])[0]
    assert np.allclose(logp, np.log([p_a_after_bos, p_b_after_a, p_end_after_b]))
    # An unseen character after a seen history: only the back-off mass.
    p_z_after_a = 0.5 * 2 / 2 * p1["z"]
    assert math.isclose(lm.logprobs(["az"])[0][1], math.log(p_z_after_a))
    # An unseen history ("z"): the unigram probability passes through unchanged.
    assert math.isclose(lm.logprobs(["zb"])[0][1], math.log(p1["b"]))
    # Probabilities after any history sum to 1 over the predicted symbols.
    for history in ("a", "b", "z", ""):
        total = sum(math.exp(lm.logprobs([history + w])[0][len(history)]) for w in "abcdefghijklmnopqrstuvwxyz .,:;-'")
        end = math.exp(lm.logprobs([history])[0][-1]) if history else 0.0
        if history:
            assert math.isclose(total + end, 1.0, rel_tol=1e-9)


def test_ngram_is_case_blind_and_round_trips():
    lm = nv.CharNGram.fit(["Smith", "Smyth", "McBride"], order=3)
    assert np.allclose(lm.nll(["SMITH"]), lm.nll(["smith"]))
    again = nv.CharNGram.from_tensors(lm.tensors(), lm.discounts)
    assert np.array_equal(again.nll(["Smith", "Brady", "Qx"]), lm.nll(["Smith", "Brady", "Qx"]))
    assert lm.nll(["Smith"])[0] < lm.nll(["Xqzvw"])[0]


def test_language_models_pick_the_best_fitting_language():
    langs = nv.LanguageNGrams.fit(["Andersson", "Nilsson", "Tanaka", "Suzuki"], [0, 0, 1, 1], 2, order=3)
    per = [m.nll(["Karlsson"])[0] for m in langs.models]
    assert np.isclose(langs.min_nll(["Karlsson"])[0] * 9, min(per) * 9)
    assert langs.min_nll(["Karlsson"])[0] < mix_nll(langs, ["Karlsson"])[0]


def test_knn_distance_is_the_mean_of_the_k_nearest():
    ref = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert np.allclose(nv.knn_distance(np.array([[0.0, 0.0]]), ref, k=2), [2.5])
    assert np.allclose(nv.knn_distance(np.array([[3.0, 4.0]]), ref, k=1), [0.0])


def _dev_rows():
    with open(DEV, encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def test_dev_file_is_well_formed():
    from namecls.data.names import validate

    rows = _dev_rows()
    assert {r["group"] for r in rows} == {"foreign", "in_language"}
    assert len({r["name"].lower() for r in rows}) == len(rows)
    assert all(validate(r["name"]).text == r["name"] for r in rows)
    assert DEV.stat().st_size < 100_000


@pytest.fixture(scope="module")
def fitted(names_data):
    """Both committed checkpoints' novelty scores, fitted as train.py would, with the dev AUROCs recorded."""
    import namecls
    from namecls.data.splits import make_split

    torch.set_num_threads(1)
    split = make_split(names_data, "clean", 0)
    train_names, train_targets = split.part("train")
    val = sorted(set(split.part("val")[0]))
    test = sorted(set(split.part("test")[0]))
    rows = _dev_rows()
    dev = ([r["name"] for r in rows], [r["group"] for r in rows], test)
    out = {}
    for kind in ("rnn", "gru"):
        clf = namecls.load(kind)
        out[kind] = (clf, nv.fit(clf.model, train_names, train_targets, clf.labels, dev=dev, val_names=val))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_dev_auroc_matches_the_recorded_value(fitted, kind):
    _, novelty = fitted[kind]
    dev = novelty.summary["dev"]
    recorded = namecls.load(kind).metrics["novelty"]["measured"]["dev"]  # by bench/novelty.py --heldout --write
    for key in ("auroc_vs_in_language", "auroc_vs_test_split"):  # equal to 3 decimals
        assert abs(dev[key] - recorded[key]) <= 5e-4, (key, dev[key], recorded[key])
    assert "measured" not in novelty.summary  # the library records no number it has not measured


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_round_trip_and_determinism(fitted, kind):
    from safetensors.torch import load, save

    clf, novelty = fitted[kind]
    names = ["Nowak", "Tanaka", "Hoxha", "Gudmundsdottir", "O'Neill", "Zz"]
    states, _ = nv.final_states(clf.model, names)
    scores = novelty.score(names, states)
    assert np.array_equal(scores, novelty.score(names, states))
    # Through the stored form: safetensors bytes and JSON text, as a checkpoint would hold them.
    import json

    tensors = load(save(novelty.tensors()))
    summary = json.loads(json.dumps(novelty.summary))
    again = nv.Novelty.from_saved(tensors, summary)
    # Equal but for float64 rounding: the k-NN term expands |q - r|^2, and BLAS sums the rebuilt copy's products
    # in another order on some CPUs (8.9e-13 seen on AVX-512); far below the float32 states' own precision.
    assert np.allclose(again.score(names, states), scores, rtol=1e-9, atol=1e-9)
    assert again.threshold == novelty.threshold
    assert np.array_equal(again.unfamiliar(scores), scores > novelty.threshold)
    # One name at a time (as from a trace's last state) gives the same score as the batch.
    trace = clf.trace("Hoxha")
    single = novelty.score(["Hoxha"], trace.hidden[-1][None])
    assert np.allclose(single, scores[2], atol=1e-5)
    size = sum(v.numel() * v.element_size() for v in novelty.tensors().values())
    assert size < 3_000_000
