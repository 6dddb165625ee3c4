"""The hidden-state map (namecls.projection): fitting, storage beside the checkpoint, one point per step in a trace
and in ``/trace``, and the Step-through tab's map (render.map_figure, map_path_svg, TraceView)."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

import namecls
from namecls import checkpoint, projection, render, service
from namecls.data import read_names
from namecls.models import GRUConfig, RNNConfig, build
from namecls.splits import make_split


@pytest.fixture(scope="module")
def tiny(dry_run_dir):
    data = read_names(dry_run_dir.parent / "names")
    split = make_split(data, "clean", 0)
    return data, split


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_fit_is_deterministic_and_summarises_every_language(tiny, kind):
    data, split = tiny
    torch.manual_seed(0)
    model = build(RNNConfig(num_classes=4, hidden_size=12) if kind == "rnn" else
                  GRUConfig(num_classes=4, hidden_size=12, embedding_size=6, num_layers=2))
    names, targets = split.part("train")
    a = projection.fit(model, names, targets, data.labels, per_language=10)
    b = projection.fit(model, names, targets, data.labels, per_language=10)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.components, b.components)
    assert a.summary == b.summary
    assert a.components.shape == (2, 12) and a.mean.shape == (12,)
    np.testing.assert_allclose(a.components @ a.components.T, np.eye(2), atol=1e-5)  # orthonormal axes
    summary = a.summary
    assert summary["n_names"] == len(names) and summary["fitted_on"] == "train"
    assert list(summary["languages"]) == data.labels
    for c, lang in enumerate(data.labels):
        entry = summary["languages"][lang]
        assert entry["count"] == int((targets == c).sum())
        assert len(entry["sample"]) == min(10, entry["count"])
        members = np.flatnonzero(targets == c)
        states = projection.top_states(model, [names[i] for i in members])
        np.testing.assert_allclose(entry["centroid"], a.transform(states).mean(axis=0), atol=1e-3)
    x0, x1, y0, y1 = a.extent
    points, labels = a.sample()
    assert points.shape == (len(labels), 2)
    assert (points[:, 0] >= x0).all() and (points[:, 0] <= x1).all()
    assert (points[:, 1] >= y0).all() and (points[:, 1] <= y1).all()
    assert sum(r for r in summary["explained_variance_ratio"]) <= 1.0 + 1e-6
    json.dumps(summary)


def test_transform_matches_pca_by_hand(tiny):
    data, split = tiny
    torch.manual_seed(1)
    model = build(GRUConfig(num_classes=4, hidden_size=8, embedding_size=4, num_layers=1))
    names, targets = split.part("train")
    proj = projection.fit(model, names, targets, data.labels)
    states = projection.top_states(model, names).astype(np.float64)
    centred = states - states.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    got = proj.transform(states)
    for axis in range(2):  # the same axes up to sign
        corr = np.corrcoef(expected[:, axis], got[:, axis])[0, 1]
        assert abs(corr) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_trace_has_one_map_point_per_step(dry_run_dir, kind):
    clf = namecls.load(dry_run_dir / kind)
    assert clf.projection is not None and clf.projection.hidden_size == clf.config["model"]["hidden_size"]
    for name in ("Balin", "O'Neill", "Q"):
        trace = clf.trace(name)
        assert trace.map_points.shape == (len(trace.chars), 2)
        np.testing.assert_allclose(trace.map_points, clf.projection.transform(trace.hidden), atol=1e-6)
        np.testing.assert_array_equal(clf.trace(name).map_points, trace.map_points)  # deterministic
    # The last step of a name is its final state: the point the map would give that name as a training name.
    final = projection.top_states(clf.model, ["Balin"])
    np.testing.assert_allclose(clf.trace("Balin").map_points[-1], clf.projection.transform(final)[0], atol=1e-5)
    out = service.trace({kind: clf}, "O'Neill", kind)
    assert len(out["map"]) == len(out["chars"]) == 7 and all(len(p) == 2 for p in out["map"])
    json.dumps(out)


def test_projection_files_round_trip_and_are_checked(dry_run_dir, tmp_path):
    folder = shutil.copytree(dry_run_dir / "gru", tmp_path / "gru")
    clf = namecls.load(folder)
    saved = json.loads((folder / checkpoint.PROJECTION_JSON).read_text())
    assert clf.projection.summary == saved
    original = (folder / checkpoint.PROJECTION_JSON).read_text()

    (folder / checkpoint.PROJECTION_JSON).write_text("{not json")
    with pytest.raises(namecls.CheckpointError, match="projection.json"):
        namecls.load(folder)
    wrong = json.loads(original)
    wrong["labels"] = wrong["labels"][::-1]
    (folder / checkpoint.PROJECTION_JSON).write_text(json.dumps(wrong))
    with pytest.raises(namecls.CheckpointError, match="labels"):
        namecls.load(folder)
    (folder / checkpoint.PROJECTION_JSON).write_text(original)
    (folder / checkpoint.PROJECTION_TENSORS).write_bytes(b"garbage")
    with pytest.raises(namecls.CheckpointError, match="projection.safetensors"):
        namecls.load(folder)
    (folder / checkpoint.PROJECTION_TENSORS).unlink()
    with pytest.raises(namecls.CheckpointError, match="missing"):
        namecls.load(folder)
    (folder / checkpoint.PROJECTION_JSON).unlink()
    assert namecls.load(folder).projection is None  # no map at all is fine


def test_saving_without_a_map_removes_a_stale_one(dry_run_dir, tmp_path):
    folder = shutil.copytree(dry_run_dir / "rnn", tmp_path / "rnn")
    model, config, metrics = checkpoint.load(folder)
    extra = {k: config[k] for k in ("protocol", "split_seed", "data_fingerprint", "train_config")}
    checkpoint.save(folder, model, config["labels"], extra, metrics)
    assert not (folder / checkpoint.PROJECTION_JSON).exists()
    assert not (folder / checkpoint.PROJECTION_TENSORS).exists()
    assert namecls.load(folder).projection is None


# ---------------------------------------------------------------------------------------------------------------
# The map in the Step-through tab


def test_map_figure_scatters_the_sample_over_the_extent(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    fig = render.map_figure(clf.projection, "gru")
    (ax,) = [a for a in fig.axes if a.get_gid() == render.MAP_AXES]
    points, labels = clf.projection.sample()
    (scatter,) = ax.collections
    offsets = np.asarray(scatter.get_offsets())
    assert offsets.shape == points.shape
    np.testing.assert_allclose(np.sort(offsets, axis=0), np.sort(points, axis=0), atol=1e-6)  # shuffled order
    x0, x1, y0, y1 = clf.projection.extent
    assert ax.get_xlim() == pytest.approx((x0, x1)) and ax.get_ylim() == pytest.approx((y0, y1))
    assert {t.get_text() for t in ax.get_legend().get_texts()} == set(clf.labels)
    centroid_labels = {t.get_text() for t in ax.texts}
    assert centroid_labels <= set(clf.labels) and centroid_labels
    assert render.map_image(clf) is render.map_image(clf)  # rendered once per model


def _svg_points(svg):
    return {int(s): (float(x), float(y)) for s, x, y in
            re.findall(r'class="map-point" data-step="(\d+)" cx="([\d.-]+)" cy="([\d.-]+)"', svg)}


def test_trace_view_draws_the_path_prefix_by_prefix(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    view = render.TraceView.build(clf, "Baggins")
    heat, traj, map_html = view.images()
    assert map_html.count("<img") == 1 and "hidden-state map" in map_html
    image, T = view.map, view.length
    box = image.axes[0]
    for step in range(T):
        overlay = view.step(step)[5]
        assert "<img" not in overlay  # a step sends the path only
        assert re.search(r'class="map-current" data-step="(\d+)"', overlay).group(1) == str(step)
        points = _svg_points(overlay)
        assert sorted(points) == list(range(step + 1))  # the prefixes read so far
        for s, (x, y) in points.items():  # each point sits where the map puts the state after that character
            px, py = view.trace.map_points[s]
            px = min(max(px, min(box.xlim)), max(box.xlim))
            py = min(max(py, min(box.ylim)), max(box.ylim))
            assert x == pytest.approx(box.x(px) * image.width, abs=0.06)
            assert y == pytest.approx(box.y_top(py) * image.height, abs=0.06)
            assert 0 <= x <= image.width and 0 <= y <= image.height
        assert overlay.count("<text") == step + 1
    assert view.step(99)[5] == view.step(T - 1)[5]


def test_path_points_off_the_map_are_pinned_to_its_border(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    image = render.map_image(clf)
    box = image.axes[0]
    far = np.array([[1e6, -1e6], [0.0, 0.0]])
    svg = render.map_path_svg(image, far, ["<", "b"], 1)
    (x, y) = _svg_points(svg)[0]
    assert x == pytest.approx(box.x(max(box.xlim)) * image.width, abs=0.06)
    assert y == pytest.approx(box.y_top(min(box.ylim)) * image.height, abs=0.06)
    assert "&lt;" in svg and "<text" in svg and ">-<" not in svg  # the character is escaped


def test_a_checkpoint_without_a_map_still_steps(dry_run_dir, tmp_path):
    folder = shutil.copytree(dry_run_dir / "rnn", tmp_path / "rnn")
    for name in (checkpoint.PROJECTION_JSON, checkpoint.PROJECTION_TENSORS):
        (folder / name).unlink()
    clf = namecls.load(folder)
    assert clf.trace("Balin").map_points is None
    assert service.trace({"rnn": clf}, "Balin", "rnn")["map"] is None
    view = render.TraceView.build(clf, "Balin")
    assert view.map is None and view.images()[2] == render.NO_MAP_HTML
    assert view.step(2)[5] == ""


def test_sample_names_follow_the_sample(dry_run_dir, tiny):
    data, split = tiny
    clf = namecls.load(dry_run_dir / "gru")
    points, labels = clf.projection.sample()
    names = clf.projection.sample_names()
    assert len(names) == len(points)
    train = dict(zip(*split.part("train")))
    assert all(data.labels[train[n]] == clf.labels[c] for n, c in zip(names, labels))
    # each name's final state is its point
    np.testing.assert_allclose(clf.projection.transform(projection.top_states(clf.model, names)), points, atol=1e-3)
    older = {**clf.projection.summary, "languages": {lang: {k: v for k, v in entry.items() if k != "names"}
                                                       for lang, entry in clf.projection.summary["languages"].items()}}
    assert projection.Projection(clf.projection.mean, clf.projection.components, older).sample_names() == \
        [""] * len(points)


def test_lda_map_is_sklearns_transform_and_the_choice_is_recorded(tiny):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    data, split = tiny
    torch.manual_seed(2)
    model = build(GRUConfig(num_classes=4, hidden_size=8, embedding_size=4, num_layers=1))
    names, targets = split.part("train")
    proj = projection.fit(model, names, targets, data.labels, method="lda", validation=split.part("val"))
    states = projection.top_states(model, names).astype(np.float64)
    expected = LinearDiscriminantAnalysis(n_components=2, solver="svd").fit(states, targets).transform(states)
    got = proj.transform(states)
    for axis in range(2):  # the same axes up to sign
        np.testing.assert_allclose(np.abs(got[:, axis]), np.abs(expected[:, axis]), rtol=1e-3, atol=1e-3)
    assert proj.summary["method_name"] == "lda" and "explained_variance_ratio" not in proj.summary
    assert len(proj.summary["axis_share"]) == 2 and proj.summary["axis_share_meaning"]
    scores = proj.summary["evidence"]["scores"]
    assert set(scores) == set(projection.METHODS)
    assert scores == projection.compare_methods(model, split.part("train"), split.part("val"), data.labels)
