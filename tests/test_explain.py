"""Explanations a visitor can read (namecls.explain.units and the Trace fields built on it), each checked against an
independent computation: attribution and deletion against separate predictions, neighbours against a brute-force
search, unit contexts against a name-by-name scan, key units against a direct sum; and the explain files' checks."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

import namecls
from namecls import checkpoint
from namecls.explain import units as explain
from namecls.serving import service
from namecls.data.names import read_names
from namecls.data.splits import make_split

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded


@pytest.fixture(scope="module")
def committed():
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


def _probs(clf, text) -> dict[str, float]:
    return dict(clf.predict(text, k=len(clf.labels)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["Nguyen", "Kowalski", "O'Neill"])
def test_attribution_is_the_change_in_log_probability_per_character(committed, kind, name):
    clf = committed[kind]
    trace = clf.trace(name)
    lang = clf.labels[trace.target]
    assert lang == clf.predict(name, k=1)[0][0]
    C = len(clf.labels)
    assert trace.attribution.sum() == pytest.approx(math.log(trace.probs[-1, trace.target]) - math.log(1 / C),
                                                    abs=1e-9)
    for t in range(len(name)):
        before = 1 / C if t == 0 else _probs(clf, name[:t])[lang]
        after = _probs(clf, name[: t + 1])[lang]
        assert trace.attribution[t] == pytest.approx(math.log(after / before), abs=1e-4), (name, t)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["Nguyen", "Kowalski"])
def test_deletion_is_the_leave_one_out_change(committed, kind, name):
    clf = committed[kind]
    trace = clf.trace(name)
    lang = clf.labels[trace.target]
    full = _probs(clf, name)[lang]
    assert trace.deletion.shape == (len(name),)
    for t in range(len(name)):
        without = _probs(clf, name[:t] + name[t + 1 :])[lang]
        assert trace.deletion[t] == pytest.approx(math.log(full) - math.log(without), abs=1e-4), (name, t)


def test_deletion_of_a_one_letter_name_compares_with_uniform(committed):
    clf = committed["gru"]
    trace = clf.trace("Q")
    assert trace.deletion[0] == pytest.approx(math.log(trace.probs[-1].max()) - math.log(1 / len(clf.labels)))


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_neighbours_equal_a_brute_force_search(committed, kind):
    clf = committed[kind]
    bank = clf.explain.bank_states.astype(np.float64)
    trace = clf.trace("Schmidt")
    assert len(trace.neighbours) == len(trace.chars) and all(len(step) == 8 for step in trace.neighbours)
    for t in (0, 3, len(trace.chars) - 1):
        distances = np.linalg.norm(bank - trace.hidden[t].astype(np.float64), axis=1)
        expected = sorted(range(len(bank)), key=lambda i: (distances[i], i))[:8]
        got = trace.neighbours[t]
        # Two codes (scipy's cdist, numpy's norm) may round a distance differently in its last bits, so two
        # candidates closer than that may trade places; apart from such near-ties the lists are the same.
        near_tie = 1e-9 * distances[expected[-1]]
        index = [nb.index for nb in got]
        assert np.all(np.diff(distances[index]) >= -near_tie)  # nearest first
        assert distances[index].max() <= distances[expected[-1]] + near_tie  # none farther than the 8th nearest
        assert {i for i in expected if distances[i] < distances[expected[-1]] - near_tie} <= set(index)
        assert [nb.name for nb in got] == [clf.explain.bank_names[i] for i in index]
        assert [nb.language for nb in got] == [clf.explain.bank_languages[i] for i in index]
        np.testing.assert_allclose([nb.distance for nb in got], distances[index], rtol=1e-9)
        assert clf.neighbours(trace.hidden[t], n=3) == got[:3]


def test_the_bank_is_the_maps_named_sample(committed):
    for clf in committed.values():
        assert clf.explain.bank_names == clf.projection.sample_names()
        points, labels = clf.projection.sample()
        assert clf.explain.bank_languages == [clf.labels[i] for i in labels]
        np.testing.assert_allclose(clf.projection.transform(clf.explain.bank_states), points, atol=2e-2)  # float16


def test_committed_checkpoints_have_explain_files_and_nguyen_sits_among_vietnamese_names(committed):
    """A fact check of the committed checkpoints: the state after the whole of "Nguyen" has Vietnamese neighbours."""
    for kind, clf in committed.items():
        for name in (checkpoint.EXPLAIN_TENSORS, checkpoint.EXPLAIN_JSON):
            assert (namecls.inference.CHECKPOINTS / kind / name).is_file()
        assert "Vietnamese" in {nb.language for nb in clf.trace("Nguyen").neighbours[-1]}, kind


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_unit_order_is_a_permutation_and_key_units_a_direct_sum(committed, kind):
    clf = committed[kind]
    L, H = clf.explain.unit_order.shape
    assert (np.sort(clf.explain.unit_order, axis=1) == np.arange(H)).all()
    trace = clf.trace("Kowalski")
    assert trace.initial.shape == (L, H)
    if kind == "rnn":
        np.testing.assert_array_equal(trace.initial[0], clf.model.h0.detach().numpy())
    else:
        assert not trace.initial.any()
    change = {}
    for layer in range(L):
        previous = trace.initial[layer]
        for t in range(len(trace.chars)):
            step = np.abs(trace.layers[layer, t].astype(np.float64) - previous)
            for unit in range(H):
                change[layer, unit] = change.get((layer, unit), 0.0) + step[unit]
            previous = trace.layers[layer, t]
    expected = sorted(change, key=lambda lu: (-change[lu], lu))[:24]
    got = trace.key_units()
    assert len(got) == 24 and len(set(got)) == 24
    # the same sums, largest first (the pairs themselves may swap where float32 summation order breaks a near-tie)
    np.testing.assert_allclose([change[lu] for lu in got], [change[lu] for lu in expected], rtol=1e-5)


@pytest.mark.slow
def test_unit_contexts_equal_a_name_by_name_scan(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    data = read_names(dry_run_dir.parent / "names")
    split = make_split(data, clf.config["protocol"], clf.config["split_seed"])
    names, targets = split.part("train")
    first = {}
    for name, target in zip(names, targets):
        first.setdefault(name, data.labels[target])
    best = {name: clf.trace(name).layers for name in first}  # (L, T, H) each
    L, H = clf.explain.unit_order.shape
    K = clf.explain.summary["k"]
    assert K == min(explain.K_CONTEXTS, len(first))
    for layer in range(L):
        for unit in range(H):
            direct = {name: (float(states[layer, :, unit].max()), int(states[layer, :, unit].argmax()))
                      for name, states in best.items()}
            ranked = sorted(direct.values(), key=lambda vp: -vp[0])[:K]
            stored = clf.explain.unit_contexts(layer, unit)
            assert len(stored) == K and len({c.name for c in stored}) == K  # each distinct name once
            np.testing.assert_allclose([c.value for c in stored], [v for v, _ in ranked], atol=1e-5)
            for c in stored:
                value, position = direct[c.name]
                assert c.value == pytest.approx(value, abs=1e-5) and c.language == first[c.name]
                assert c.value == pytest.approx(float(best[c.name][layer, c.position, unit]), abs=1e-5)
                assert position == c.position or abs(best[c.name][layer, position, unit] - c.value) < 1e-5


def test_fit_is_deterministic(dry_run_dir):
    from namecls.models.networks import GRUConfig, build

    data = read_names(dry_run_dir.parent / "names")
    names, targets = make_split(data, "clean", 0).part("train")
    torch.manual_seed(0)
    model = build(GRUConfig(num_classes=4, hidden_size=10, embedding_size=4, num_layers=2))
    a, b = (explain.fit(model, names, targets, data.labels, k=5, per_language=7) for _ in range(2))
    assert a.summary == b.summary
    for key, tensor in a.tensors().items():
        assert torch.equal(tensor, b.tensors()[key]), key
    assert len(a.bank_names) == sum(min(7, int((targets == c).sum())) for c in range(len(data.labels)))
    json.dumps(a.summary)


def _copy(dry_run_dir, tmp_path, kind="gru"):
    return shutil.copytree(dry_run_dir / kind, tmp_path / kind)


@pytest.mark.parametrize("missing", [checkpoint.EXPLAIN_TENSORS, checkpoint.EXPLAIN_JSON])
def test_one_explain_file_missing_is_an_error(dry_run_dir, tmp_path, missing):
    folder = _copy(dry_run_dir, tmp_path)
    (folder / missing).unlink()
    with pytest.raises(namecls.CheckpointError, match=f"{missing}: file is missing"):
        namecls.load(folder)


@pytest.mark.parametrize("damaged", [checkpoint.EXPLAIN_TENSORS, checkpoint.EXPLAIN_JSON])
def test_a_corrupt_explain_file_is_named(dry_run_dir, tmp_path, damaged):
    folder = _copy(dry_run_dir, tmp_path)
    (folder / damaged).write_bytes(b"garbage{")
    with pytest.raises(namecls.CheckpointError, match=damaged.replace(".", r"\.")):
        namecls.load(folder)


def test_explain_files_that_disagree_are_named(dry_run_dir, tmp_path):
    folder = _copy(dry_run_dir, tmp_path)
    summary = json.loads((folder / checkpoint.EXPLAIN_JSON).read_text())
    summary["bank"]["names"] = summary["bank"]["names"][:-1]
    (folder / checkpoint.EXPLAIN_JSON).write_text(json.dumps(summary))
    with pytest.raises(namecls.CheckpointError, match=r"explain\.json.*bank"):
        namecls.load(folder)
    summary["labels"] = summary["labels"][::-1]
    (folder / checkpoint.EXPLAIN_JSON).write_text(json.dumps(summary))
    with pytest.raises(namecls.CheckpointError, match="labels"):
        namecls.load(folder)


def test_no_explain_files_means_no_neighbours(dry_run_dir, tmp_path):
    folder = _copy(dry_run_dir, tmp_path)
    for name in (checkpoint.EXPLAIN_TENSORS, checkpoint.EXPLAIN_JSON):
        (folder / name).unlink()
    clf = namecls.load(folder)
    assert clf.explain is None
    trace = clf.trace("Balin")
    assert trace.neighbours is None and trace.deletion is not None and trace.attribution.shape == (5,)
    out = service.trace({"gru": clf}, "Balin", "gru")
    assert out["neighbours"] is None and len(out["attribution"]) == len(out["deletion"]) == 5
    with pytest.raises(ValueError, match="reference bank"):
        clf.neighbours(trace.hidden[-1])


def test_trace_endpoint_carries_the_explanations(dry_run_dir):
    clf = namecls.load(dry_run_dir / "rnn")
    out = service.trace({"rnn": clf}, "Gimli", "rnn")
    trace = clf.trace("Gimli")
    np.testing.assert_allclose(out["attribution"], trace.attribution)
    np.testing.assert_allclose(out["deletion"], trace.deletion)
    assert [[n["name"] for n in step] for step in out["neighbours"]] == \
        [[nb.name for nb in step] for step in trace.neighbours]
    assert set(out["neighbours"][0][0]) == {"name", "language", "distance"}
    json.dumps(out)
