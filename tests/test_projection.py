"""The hidden-state map (namecls.explain.projection): fitting, storage beside the checkpoint, one point per step in a
trace
and in ``/trace``, and the Step-through tab's map (namecls.ui.render.figures.map_svg and map_path_svg, SVG)."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

import namecls
from namecls import checkpoint
from namecls.explain import projection
from namecls.serving import service
from namecls.data.names import read_names
from namecls.models.networks import GRUConfig, RNNConfig, build
from namecls.data.splits import make_split
from namecls.ui.render import figures
from namecls.ui.tabs import step_through
from namecls.ui.render.palette import language_color

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded


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
# The map in the Step-through tab (namecls.ui.render.figures: SVG)


def _svg_attrs(svg, cls):
    """The attributes of every element of class ``cls`` in ``svg``, in document order."""
    tags = re.findall(r"<\w+\s[^>]*>", svg)
    attrs = [dict(re.findall(r'([\w-]+)="([^"]*)"', tag)) for tag in tags]
    return [a for a in attrs if cls in a.get("class", "").split()]


def _plot_box(svg):
    """(x, y, width, height) of the map's drawn frame: where the extent's corners must land."""
    x, y, w, h = re.search(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', svg).groups()
    return float(x), float(y), float(w), float(h)


def _by_hand(points, extent, box):
    """Data points → pixels inside the drawn frame (y up), off-map points pinned to its border."""
    x0, x1, y0, y1 = extent
    bx, by, bw, bh = box
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    fx, fy = np.clip((p[:, 0] - x0) / (x1 - x0), 0, 1), np.clip((p[:, 1] - y0) / (y1 - y0), 0, 1)
    return np.stack([bx + fx * bw, by + bh - fy * bh], axis=1)


def test_map_svg_draws_each_sample_name_as_a_dot_inside_the_extent(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    svg = figures.map_svg(clf.projection, "gru")
    points, labels = clf.projection.sample()
    names = clf.projection.sample_names()
    dots = re.findall(r'<circle class="ref" data-i="(\d+)" cx="([\d.-]+)" cy="([\d.-]+)" r="[\d.]+" '
                      r'fill="(#[0-9a-f]{6})"[^>]*><title>([^<]*)</title></circle>', svg)
    assert len(dots) == svg.count("<circle") == len(points) == len(names)
    assert sorted(int(i) for i, *_ in dots) == list(range(len(points)))  # each sample point once
    box = _plot_box(svg)
    expected = _by_hand(points, clf.projection.extent, box)
    for i, cx, cy, fill, title in dots:
        i = int(i)
        lang = clf.labels[labels[i]]
        assert title == f"{names[i]} ({lang})" and names[i]  # hovering a dot names its training name
        assert fill == language_color(lang)  # colours follow the language's name, whatever the label order
        assert (float(cx), float(cy)) == pytest.approx(tuple(expected[i]), abs=0.06)
        assert box[0] <= float(cx) <= box[0] + box[2] and box[1] <= float(cy) <= box[1] + box[3]
    frame = figures.map_frame(clf.projection)  # the frame's own transform agrees with the drawn frame
    x0, x1, y0, y1 = clf.projection.extent
    np.testing.assert_allclose(frame.pixels([[x0, y0], [x1, y1]]),
                               [[box[0], box[1] + box[3]], [box[0] + box[2], box[1]]], atol=1e-9)


def test_map_path_svg_draws_the_path_prefix_by_prefix(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    trace = clf.trace("Baggins")
    T = len(trace.chars)
    box = _plot_box(figures.map_svg(clf.projection, "gru"))
    expected = _by_hand(trace.map_points, clf.projection.extent, box)
    n_langs = int(np.isfinite(clf.projection.centroids()).all(axis=1).sum())
    assert n_langs == len(clf.labels) == 4
    for step in range(T):
        svg = figures.map_path_svg(clf.projection, trace.map_points, trace.chars, step)
        assert "<img" not in svg
        points = _svg_attrs(svg, "map-point")
        assert [int(p["data-step"]) for p in points] == list(range(step + 1))  # the prefixes read so far
        for p in points:  # each point sits where the map puts the state after that character
            s = int(p["data-step"])
            assert (float(p["cx"]), float(p["cy"])) == pytest.approx(tuple(expected[s]), abs=0.06)
        (current,) = _svg_attrs(svg, "map-current")
        assert int(current["data-step"]) == step
        assert (float(current["cx"]), float(current["cy"])) == pytest.approx(tuple(expected[step]), abs=0.06)
        (future,) = _svg_attrs(svg, "map-future")
        assert len(future["points"].split()) == T  # the whole name, faint
        path = _svg_attrs(svg, "map-path")
        if step == 0:
            assert path == []
        else:
            vertices = [tuple(map(float, v.split(","))) for v in path[0]["points"].split()]
            assert len(vertices) == step + 1
            np.testing.assert_allclose(vertices, expected[: step + 1], atol=0.06)
        letters = re.findall(r'font-family="IBM Plex Mono, monospace"[^>]*>([^<]*)</text>', svg)
        assert letters == trace.chars[: step + 1]
        langs = re.findall(r'<text class="lang"[^>]*>([^<]*)</text>', svg)
        assert sorted(langs) == sorted(clf.labels) and len(langs) == n_langs
    assert figures.map_path_svg(clf.projection, trace.map_points, trace.chars, 99) == \
        figures.map_path_svg(clf.projection, trace.map_points, trace.chars, T - 1)


def test_neighbour_rings_sit_on_the_neighbours_dots(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    assert clf.explain.bank_names == clf.projection.sample_names()  # the rings rely on the same order
    trace = clf.trace("Bolgin")
    dots = {int(i): (cx, cy, title) for i, cx, cy, title in
            re.findall(r'<circle class="ref" data-i="(\d+)" cx="([\d.-]+)" cy="([\d.-]+)"[^>]*><title>([^<]*)'
                       r'</title>', figures.map_svg(clf.projection, "gru"))}
    for step, near in enumerate(trace.neighbours):
        svg = figures.map_path_svg(clf.projection, trace.map_points, trace.chars, step, [n.index for n in near])
        rings = _svg_attrs(svg, "map-neighbour")
        assert len(rings) == len(near) > 0
        for ring, n in zip(rings, near):
            cx, cy, title = dots[n.index]
            assert (ring["cx"], ring["cy"]) == (cx, cy) and title == f"{n.name} ({n.language})"


def test_path_points_off_the_map_are_pinned_to_its_border(dry_run_dir):
    clf = namecls.load(dry_run_dir / "gru")
    frame = figures.map_frame(clf.projection)
    box = _plot_box(figures.map_svg(clf.projection, "gru"))
    far = np.array([[1e6, -1e6], [-1e6, 1e6], [0.0, 0.0]])
    pinned = frame.pixels(far)
    right, bottom, left, top = box[0] + box[2], box[1] + box[3], box[0], box[1]
    np.testing.assert_allclose(pinned[:2], [[right, bottom], [left, top]], atol=1e-9)  # the border's corners
    svg = figures.map_path_svg(clf.projection, far, ["<", "b", "&"], 2)
    points = _svg_attrs(svg, "map-point")
    for p, (x, y) in zip(points, pinned):
        assert (float(p["cx"]), float(p["cy"])) == pytest.approx((x, y), abs=0.06)
    assert "&lt;" in svg and "&amp;</text>" in svg and "><</text>" not in svg  # the characters are escaped


def test_a_checkpoint_without_a_map_still_steps(dry_run_dir, tmp_path):
    folder = shutil.copytree(dry_run_dir / "rnn", tmp_path / "rnn")
    for name in (checkpoint.PROJECTION_JSON, checkpoint.PROJECTION_TENSORS):
        (folder / name).unlink()
    clf = namecls.load(folder)
    assert clf.projection is None and clf.trace("Balin").map_points is None
    assert service.trace({"rnn": clf}, "Balin", "rnn")["map"] is None
    view = step_through.StepView.build(clf, "Balin", 3)
    assert view.length == 5 and view.trace.map_points is None
    assert view.projection is None and step_through._bank_size(view.projection) == 0
    assert "no hidden-state map" in step_through.NO_MAP_HTML


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
