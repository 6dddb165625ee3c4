"""The app's rendering helpers (namecls.render), checked by content: figure data, marks, tables, escaped HTML.

No server. Traces are built by hand (any number of layers, units and characters) or taken from the committed
checkpoints, so nothing here depends on the models' sizes.
"""

import re

import numpy as np
import pandas as pd
import pytest

import namecls
from namecls import render
from namecls.inference import Trace

LABELS = ["Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish", "Italian",
          "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Scottish", "Spanish", "Vietnamese"]


def make_trace(name="Nguyen", layers=2, hidden=7, kind="gru", seed=0) -> Trace:
    rng = np.random.default_rng(seed)
    norm = namecls.normalize(name)
    T = len(norm.text)
    lo = 0.0 if kind == "rnn" else -1.0
    states = rng.uniform(lo, 1.0, size=(layers, T, hidden)).astype(np.float32)
    logits = rng.normal(size=(T, len(LABELS)))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Trace(name, norm, list(norm.text), states, probs.astype(np.float32), LABELS)


@pytest.fixture(scope="module")
def models():
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


def data_axes(fig):
    return [ax for ax in fig.axes if ax.get_gid() == render.STEP_AXES]


# ---------------------------------------------------------------------------------------------------------------
# Heatmap


@pytest.mark.parametrize("kind, layers", [("rnn", 1), ("gru", 2), ("gru", 3)])
def test_heatmap_shows_every_layer_with_the_state_range(kind, layers):
    trace = make_trace("Nguyen", layers=layers, hidden=5, kind=kind)
    fig = render.heatmap_figure(trace, kind)
    axes = data_axes(fig)
    assert len(axes) == layers
    scale = render.STATE_SCALES[kind]
    for i, ax in enumerate(axes):
        (image,) = ax.get_images()
        np.testing.assert_array_equal(np.asarray(image.get_array()), trace.layers[i].T)  # units × characters
        assert image.get_clim() == (scale["vmin"], scale["vmax"])
        assert image.get_cmap().name == scale["cmap"]
    assert [t.get_text() for t in axes[-1].get_xticklabels()] == list("Nguyen")
    assert render.STATE_SCALES["rnn"]["vmin"] == 0 and render.STATE_SCALES["rnn"]["vmax"] == 1
    assert render.STATE_SCALES["gru"]["vmin"] == -1 and render.STATE_SCALES["gru"]["vmax"] == 1


def test_heatmap_of_a_real_trace_uses_its_hidden_states(models):
    for kind, clf in models.items():
        trace = clf.trace("O'Neill")
        fig = render.heatmap_figure(trace, kind)
        for i, ax in enumerate(data_axes(fig)):
            np.testing.assert_array_equal(np.asarray(ax.get_images()[0].get_array()), trace.layers[i].T)
        labels = [t.get_text() for t in data_axes(fig)[-1].get_xticklabels()]
        assert labels == list("O'Neill")


def test_space_is_a_visible_tick_label():
    fig = render.heatmap_figure(make_trace("De la Cruz", layers=1), "gru")
    assert [t.get_text() for t in data_axes(fig)[0].get_xticklabels()][2] == "␣"


# ---------------------------------------------------------------------------------------------------------------
# The marked step over a rendered figure


def _mark_boxes(html):
    pattern = r'data-step="(\d+)" data-axes="(\d+)" style="[^"]*left:([\d.]+)%;top:([\d.]+)%;width:([\d.]+)%;height:([\d.]+)%'
    return [(int(s), int(a), *map(float, rest)) for s, a, *rest in re.findall(pattern, html)]


@pytest.mark.parametrize("step", [0, 3, 5])
def test_marked_column_is_the_step_in_every_layer(step):
    trace = make_trace("Nguyen", layers=2, hidden=9)
    fig = render.heatmap_figure(trace, "gru")
    image = render.FigureImage.from_figure(fig, "heatmap")
    boxes = _mark_boxes(image.html(step))
    assert [(s, a) for s, a, *_ in boxes] == [(step, 0), (step, 1)]
    width_px, height_px = fig.get_size_inches() * fig.dpi
    for (_, axes_index, left, top, width, height), ax in zip(boxes, data_axes(fig)):
        # Independent check: where matplotlib itself puts the edges of column `step`.
        (x0, _), (x1, _) = ax.transData.transform([(step - 0.5, 0), (step + 0.5, 0)])
        assert left == pytest.approx(100 * x0 / width_px, abs=0.01)
        assert width == pytest.approx(100 * (x1 - x0) / width_px, abs=0.01)
        bbox = ax.get_window_extent()
        assert top == pytest.approx(100 * (1 - bbox.y1 / height_px), abs=0.01)
        assert height == pytest.approx(100 * bbox.height / height_px, abs=0.01)


def test_figure_image_is_a_png_of_the_stated_size():
    import base64
    import io

    from PIL import Image

    image = render.FigureImage.from_figure(render.trajectory_figure(make_trace("Qin")), "lines")
    assert image.src.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(image.src.split(",", 1)[1])))
    assert png.size == (image.width, image.height)
    assert image.html(None).count("step-mark") == 0


def test_unit_ticks_sit_on_the_rows_of_the_changed_units():
    trace = make_trace("Nguyen", layers=1, hidden=10)
    fig = render.heatmap_figure(trace, "rnn")
    image = render.FigureImage.from_figure(fig, "heatmap")
    html = image.html(2, units=[(0, 0), (0, 9)])
    assert re.findall(r'data-layer="(\d+)" data-unit="(\d+)"', html) == [("0", "0"), ("0", "9")]
    tops = [float(t) for t in re.findall(r"top:calc\(([\d.]+)% - 3px\)", html)]
    box = image.axes[0]
    top_of_axes, bottom_of_axes = 100 * (1 - box.bottom - box.height), 100 * (1 - box.bottom)
    assert top_of_axes < tops[0] < tops[1] < bottom_of_axes  # unit 0 at the top, unit 9 at the bottom
    assert tops[0] == pytest.approx(top_of_axes + 100 * box.height / 20, abs=0.01)  # middle of the first row


# ---------------------------------------------------------------------------------------------------------------
# Step view


def test_trace_view_step_renders_the_prefix(models):
    clf = models["gru"]
    view = render.TraceView.build(clf, "Nguyen")
    assert view.length == 6
    for step in range(6):
        name, top, units, heat, traj, path = view.step(step, k=4)
        assert top == render.top_k_dict(view.trace.top(step, 4))
        assert list(top) == [lang for lang, _ in clf.trace("Nguyen"[: step + 1]).top(-1, 4)]  # a prefix's answer
        assert f'Character <b>{step + 1}</b> of 6' in name
        assert {s for s, *_ in _mark_boxes(heat)} == {step}
        assert {s for s, *_ in _mark_boxes(traj)} == {step}
        assert len(units) == min(8, view.trace.layers.shape[0] * view.trace.layers.shape[2])
        assert "<img" not in heat + traj + path  # a step sends marks only, never the images again
        if view.map is not None:
            assert f'class="map-current" data-step="{step}"' in path
    heat_img, traj_img, map_img = view.images()
    assert heat_img.count("<img") == traj_img.count("<img") == 1 and "step-mark" not in heat_img
    box = re.compile(r'max-width:(\d+)px;aspect-ratio:(\d+)/(\d+)')
    assert box.search(heat_img).groups() == box.search(view.step(2)[3]).groups()  # the marks' box = the image's
    assert view.step(99, 3)[0] == view.step(5, 3)[0]  # clamped
    assert view.step(-4, 3)[0] == view.step(0, 3)[0]


def test_name_html_highlights_the_current_character_only():
    html = render.name_html(list("O'Neill"), 1)
    spans = re.findall(r'<span class="ch (\w+)" data-step="(\d+)"[^>]*>([^<]*)</span>', html)
    assert [cls for cls, _, _ in spans] == ["done", "current"] + ["todo"] * 5
    assert spans[1][2] == "&#x27;"  # the apostrophe, escaped
    assert "Character <b>2</b> of 7" in html
    assert "background:#d62728" in re.search(r'class="ch current"[^>]*', html).group(0)


def test_changed_units_lists_the_largest_moves():
    trace = make_trace("Nguyen", layers=2, hidden=6)
    table = render.changed_units(trace, 3, n=5)
    assert list(table.columns) == ["unit", "before", "after", "change"]
    delta = trace.layers[:, 3] - trace.layers[:, 2]
    expected = np.sort(np.abs(delta).ravel())[::-1][:5]
    np.testing.assert_allclose(np.abs(table["change"]), np.round(expected, 3), atol=1e-3)
    layer, unit = int(table["unit"][0][1]) - 1, int(table["unit"][0].split("#")[1])
    assert table["before"][0] == pytest.approx(trace.layers[layer, 2, unit], abs=1e-3)
    assert table["after"][0] == pytest.approx(trace.layers[layer, 3, unit], abs=1e-3)


def test_changed_units_at_the_first_character_start_from_the_initial_state(models):
    trace = make_trace("Qin", layers=1, hidden=4, kind="rnn")
    initial = np.full((1, 4), 0.5, dtype=np.float32)
    table = render.changed_units(trace, 0, n=4, initial=initial)
    assert table["unit"].tolist()[0].startswith("#")  # one layer: no layer prefix
    np.testing.assert_allclose(table["before"], 0.5)
    rnn = models["rnn"]
    np.testing.assert_allclose(render.initial_state(rnn), rnn.model.h0.detach().numpy()[None])
    assert not render.initial_state(models["gru"]).any()


def test_trajectory_plots_the_top_languages_probabilities():
    trace = make_trace("Nguyen")
    fig = render.trajectory_figure(trace, n=4)
    (ax,) = data_axes(fig)
    lines = ax.get_lines()
    chosen = render.trajectory_languages(trace, 4)
    assert [line.get_label() for line in lines] == chosen
    assert chosen[0] == trace.top(-1, 1)[0][0]  # the final answer comes first
    for line, lang in zip(lines, chosen):
        np.testing.assert_allclose(line.get_ydata(), trace.probs[:, LABELS.index(lang)])
    assert ax.get_ylim() == (0, 1.02)


def test_decision_step_is_where_the_final_winner_takes_over():
    trace = make_trace("Nguyen")
    probs = np.full((6, 18), 0.01, dtype=np.float32)
    probs[[0, 1, 2], 1] = 0.8  # Chinese leads for three letters
    probs[[3, 4, 5], 17] = 0.8  # then Vietnamese
    trace = Trace("Nguyen", trace.normalized, trace.chars, trace.layers, probs, LABELS)
    assert render.decision_step(trace) == 3
    assert "<b>Vietnamese</b>" in render.decision_html(trace) and "<code>Nguy</code>" in render.decision_html(trace)


# ---------------------------------------------------------------------------------------------------------------
# Text: escaped, never rendered


def test_normalisation_line_shows_what_changed():
    html = render.normalisation_html(namecls.normalize("Ślusàrski"))
    assert "<code>Ślusàrski</code> → <code>Slusarski</code>" in html
    assert "dropped" not in html
    html = render.normalisation_html(namecls.normalize("Nguyen"))
    assert "read as typed" in html
    html = render.normalisation_html(namecls.normalize("Smith 3rd"))
    assert "dropped: <code>3</code>" in html


@pytest.mark.parametrize("evil", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "${x}{{y}}"])
def test_user_text_is_escaped(evil):
    for html in (render.normalisation_html(namecls.normalize(evil)), render.esc(evil)):
        assert "<script" not in html and "<img" not in html
        assert "{" not in html and "$" not in html
    assert "&lt;script&gt;" in render.esc("<script>")


# ---------------------------------------------------------------------------------------------------------------
# Batch table


def test_batch_table_rows_and_values():
    rows = [
        {"name": "Nguyen", "normalized": "Nguyen", "top1": "Vietnamese", "probability": 0.91234,
         "top_k": {"Vietnamese": 0.91234, "Chinese": 0.05, "Korean": 0.02}, "error": None},
        {"name": "123", "normalized": "", "top1": None, "probability": None, "top_k": {},
         "error": "name has no letters"},
    ]
    table = render.batch_table(rows)
    assert list(table.columns) == ["name", "normalised", "top-1", "probability", "top-3", "error"]
    assert table.iloc[0].tolist()[:4] == ["Nguyen", "Nguyen", "Vietnamese", 0.9123]
    assert table.iloc[0]["top-3"] == "Vietnamese 91.2% · Chinese 5.0% · Korean 2.0%"
    assert table.iloc[0]["error"] == ""
    assert table.iloc[1]["error"] == "name has no letters" and table.iloc[1]["top-1"] == ""
    assert np.isnan(table.iloc[1]["probability"])


# ---------------------------------------------------------------------------------------------------------------
# Model card


def fake_metrics(n=18, seed=0):
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 20, size=(n, n))
    cm[3] = 0  # a language absent from the test set
    per = {lang: {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": int(cm[i].sum())}
           for i, lang in enumerate(LABELS[:n])}
    return {
        "test": {"accuracy": 0.81234, "macro_f1": 0.6, "balanced_accuracy": 0.55, "top3_accuracy": 0.95,
                 "per_language": per, "confusion_matrix": cm.tolist()},
        "history": [{"epoch": e, "train_loss": 2.0 / e, "val_accuracy": 0.5 + e / 100, "val_macro_f1": 0.3 + e / 100,
                     "seconds": 1.0} for e in range(1, 6)],
        "best_epoch": 4,
        "baselines": {"majority": {"accuracy": 0.47, "macro_f1": 0.04, "balanced_accuracy": 0.06,
                                   "top3_accuracy": 0.6},
                      "tfidf_logreg": {"accuracy": 0.8, "macro_f1": 0.5, "balanced_accuracy": 0.45,
                                       "top3_accuracy": 0.9}},
        "split_sizes": {"train": 100, "val": 10, "test": 10},
        "training_seconds": 123.4,
    }


def test_headline_table_lists_models_then_shared_baselines_once():
    m = fake_metrics()
    table = render.headline_table({"rnn": m, "gru": fake_metrics(seed=1)})
    assert table["model"].tolist()[:2] == ["RNN", "GRU"]
    assert len(table) == 4  # identical baselines are listed once
    assert table.loc[0, "accuracy"] == 0.812
    assert table.loc[2, "accuracy"] == 0.47 and "most frequent" in table.loc[2, "model"]
    other = fake_metrics()
    other["baselines"] = {"majority": {"accuracy": 0.5}}
    assert len(render.headline_table({"rnn": m, "gru": other})) == 5  # different splits: each model's own


def test_per_language_table_matches_the_metrics():
    m = fake_metrics()
    table = render.per_language_table(m)
    assert table["language"].tolist() == LABELS
    assert table["support"].tolist() == [m["test"]["per_language"][lang]["support"] for lang in LABELS]
    assert set(table["F1"]) == {0.333}


def test_confusion_figure_colours_rows_by_share_and_prints_counts():
    m = fake_metrics()
    fig = render.confusion_figure(m, LABELS)
    ax = fig.axes[0]
    cm = np.asarray(m["test"]["confusion_matrix"], float)
    totals = cm.sum(axis=1, keepdims=True)
    expected = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), expected)
    assert len(ax.texts) == int((cm > 0).sum())
    assert [t.get_text() for t in ax.get_yticklabels()] == LABELS


def test_training_curve_plots_the_history():
    m = fake_metrics()
    fig = render.training_curve_figure(m)
    loss_ax, val_ax = fig.axes[:2]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [h["train_loss"] for h in m["history"]])
    acc, f1 = val_ax.get_lines()[:2]
    np.testing.assert_allclose(acc.get_ydata(), [h["val_accuracy"] for h in m["history"]])
    np.testing.assert_allclose(f1.get_ydata(), [h["val_macro_f1"] for h in m["history"]])
    assert any(line.get_gid() == "best-epoch" and line.get_xdata()[0] == 4 for line in loss_ax.get_lines())


def test_facts_and_limitations(models):
    clf = models["gru"]
    facts = dict(render.facts_table(clf.config, clf.metrics).values.tolist())
    assert facts["protocol"].startswith(clf.config["protocol"])
    assert f"hidden_size={clf.config['model']['hidden_size']}" in facts["architecture"]
    assert facts["languages"] == "18"
    text = render.LIMITATIONS_MD
    for must in ("not a nationality", "18 languages", "Demirkan", "47%"):
        assert must in text
    assert render.test_share_md(fake_metrics()).startswith("Russian is ")


def test_real_metrics_render(models):
    tables = render.headline_table({k: c.metrics for k, c in models.items()})
    assert isinstance(tables, pd.DataFrame) and tables["model"].tolist()[:2] == ["RNN", "GRU"]
    for kind, clf in models.items():
        assert len(render.per_language_table(clf.metrics)) == len(clf.labels)
        figures = render.card_figures(clf.metrics, clf.labels, render.MODEL_LABELS[kind])
        assert list(figures) == list(render.CARD_FIGURES)
        for fig in figures.values():  # each titled with the model (as a suptitle, or the single axes' title)
            titles = [fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)]
            assert any(t.startswith(f"{render.MODEL_LABELS[kind]}: ") for t in titles), titles


def test_model_card_survives_a_checkpoint_without_metrics():
    empty = {}
    table = render.headline_table({"rnn": empty, "gru": fake_metrics()})
    assert table["model"].tolist()[:2] == ["RNN", "GRU"] and np.isnan(table.loc[0, "accuracy"])
    assert render.per_language_table(empty).empty
    assert not np.asarray(render.confusion_figure(empty, LABELS).axes[0].get_images()[0].get_array()).any()
    render.training_curve_figure(empty)
    assert render.test_share_md(empty) == ""
    assert dict(render.facts_table({}, {}).values.tolist())["training time"] == "?"


# ---------------------------------------------------------------------------------------------------------------
# Calibration and the low-confidence line


def test_confidence_html_says_not_sure_plainly():
    details = {"top_probability": 0.31, "threshold": 0.55, "entropy": 2.01, "low_confidence": True}
    low = render.confidence_html(details, 18)
    assert "Not sure:" in low and "none of the 18 languages" in low and 'data-low-confidence="true"' in low
    assert "31.0%" in low and "55.0%" in low and "2.01 nats" in low and f"{np.log(18):.2f}" in low
    sure = render.confidence_html({**details, "top_probability": 0.93, "low_confidence": False}, 18)
    assert "Not sure" not in sure and 'data-low-confidence="false"' in sure and "93.0%" in sure


def _calibrated_metrics():
    from namecls import calibration

    rng = np.random.default_rng(0)
    logits = 3 * rng.normal(size=(600, 18))
    targets = np.array([rng.choice(18, p=row) for row in calibration.softmax(logits / 3)])
    _, fields = calibration.calibrate(logits[:300], targets[:300], logits[300:], targets[300:])
    return fields


def test_reliability_figure_shows_the_bins_before_and_after():
    metrics = _calibrated_metrics()
    test = metrics["calibration"]["test"]
    fig = render.reliability_figure(metrics, "GRU")
    left, right = fig.axes[:2]
    for ax, when in ((left, "before"), (right, "after")):
        filled = [b for b in test[f"reliability_{when}"] if b["count"]]
        bars = [p for p in ax.patches if p.get_gid() == f"bars-{when}"] or list(ax.containers[0])
        assert [round(b.get_height(), 6) for b in bars] == [round(b["accuracy"], 6) for b in filled]
        assert f"ECE {test[f'ece_{when}']:.3f}" in ax.get_title()
    assert "T = " in right.get_title()
    empty = render.reliability_figure({}, "")
    assert any("not calibrated" in t.get_text() for t in empty.axes[0].texts)


def test_calibration_md_reports_ece_and_the_flag():
    metrics = _calibrated_metrics()
    text = render.calibration_md(metrics)
    cal, flag = metrics["calibration"], metrics["low_confidence"]
    assert f"{cal['test']['ece_before']:.3f}" in text and f"**{cal['test']['ece_after']:.3f}**" in text
    assert f"T = {cal['temperature']:.3f}" in text and render.percent(flag["threshold"]) in text
    assert render.calibration_md({}) == ""
