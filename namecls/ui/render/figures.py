"""The app's figures, as pure functions of library data: matplotlib ``Figure`` objects (object API only, no
pyplot: safe in the server's worker threads) and, for the hidden-state map, SVG strings (each dot names its
training name on hover). Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .html import MODEL_LABELS, display_char, esc
from .overlay import STEP_AXES
from .palette import STATE_SCALES, language_color

# ---------------------------------------------------------------------------------------------------------------
# Step through: the running prediction and the full hidden state


def trajectory_languages(trace, k: int = 3) -> list[str]:
    """The ``k`` languages that reach the highest probability at any prefix, the final top-1 first."""
    probs = np.asarray(trace.probs)
    order = [int(i) for i in np.argsort(-probs.max(axis=0), kind="stable")[:k]]
    final = int(np.argmax(probs[-1]))
    order = [i for i in order if i != final][: k - 1]
    return [trace.labels[i] for i in [final, *order]]


def _char_axis(ax, chars: list[str], size: float = 13) -> None:
    ax.set_xticks(range(len(chars)), [display_char(c) for c in chars])
    ax.tick_params(axis="x", length=0, labelsize=size)


def trajectory_figure(trace, k: int = 3, title: str | None = None) -> Figure:
    """The probability of the ``k`` languages of :func:`trajectory_languages` after each prefix, one line each in
    the language's colour (the app keys the colours with :func:`namecls.ui.render.html.legend_html`). The data axes have
    gid ``STEP_AXES``: :class:`namecls.ui.render.overlay.FigureImage` marks the current character on them."""
    probs = np.asarray(trace.probs)
    T = probs.shape[0]
    # Narrow and with large type: on a phone the image is shown at about two thirds of its size.
    fig = Figure(figsize=(min(8.0, max(4.4, 1.0 + 0.36 * T)), 2.7), dpi=100)
    w, h = fig.get_size_inches()
    ax = fig.add_axes((0.75 / w, 0.45 / h, 1 - 0.9 / w, 1 - 0.85 / h), gid=STEP_AXES)
    for rank, lang in enumerate(trajectory_languages(trace, k)):
        ax.plot(np.arange(T), probs[:, trace.labels.index(lang)], marker="o", ms=5 if rank else 6,
                lw=1.8 if rank else 3.2, zorder=4 - min(rank, 1), label=lang, color=language_color(lang))
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("probability", fontsize=12)
    ax.tick_params(axis="y", labelsize=11)
    ax.grid(axis="y", alpha=0.3)
    _char_axis(ax, trace.chars, 15)
    ax.set_title(title or "Probability after each prefix", fontsize=13, loc="left")
    return fig


def units_figure(trace, kind: str, order: np.ndarray | None = None, labelled: Sequence[tuple[int, int]] = ()) -> Figure:
    """Every hidden unit × characters, one panel per layer, units in ``order`` (L, H) — the checkpoint's clustering
    of units, so that units that behave alike sit together — or in index order. The rows of ``labelled``
    ``(layer, unit)`` pairs are named on the y axis."""
    scale = STATE_SCALES[kind]
    layers = np.asarray(trace.layers)  # (L, T, H)
    n_layers, T, H = layers.shape
    fig = Figure(figsize=(min(9.0, max(5.6, 1.8 + 0.42 * T)), 0.9 + 3.2 * n_layers), dpi=100,
                 layout="constrained")
    axes = fig.subplots(n_layers, 1, squeeze=False)[:, 0]
    image = None
    for i, ax in enumerate(axes):
        rows = np.arange(H) if order is None else np.asarray(order[i])
        image = ax.imshow(layers[i][:, rows].T, aspect="auto", interpolation="nearest", cmap=scale["cmap"],
                          vmin=scale["vmin"], vmax=scale["vmax"])
        where = {int(u): r for r, u in enumerate(rows)}
        marked = sorted((where[u], u) for l, u in labelled if l == i)
        ax.set_yticks([r for r, _ in marked], [f"#{u}" for _, u in marked], fontsize=7)
        ax.set_ylabel(f"layer {i + 1}: {H} units" if n_layers > 1 else f"{H} units", fontsize=10)
        _char_axis(ax, trace.chars, 12)
    axes[0].set_title(f"{MODEL_LABELS.get(kind, kind)}: every unit"
                      + (", clustered (units that behave alike side by side)" if order is not None else ""),
                      fontsize=11, loc="left")
    assert image is not None  # a model has at least one layer
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=scale["what"])
    return fig


# ---------------------------------------------------------------------------------------------------------------
# The hidden-state map (SVG: the dots name their training names on hover)


@dataclass(frozen=True)
class MapFrame:
    """The map's data extent and its SVG canvas: data (x, y) → pixels."""

    extent: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax
    width: int = 640
    height: int = 470
    margin: tuple[int, int, int, int] = (14, 12, 34, 16)  # top, right, bottom, left

    def pixels(self, points) -> np.ndarray:
        """(N, 2) data points → (N, 2) pixel positions, points off the map pinned to its border."""
        x0, x1, y0, y1 = self.extent
        top, right, bottom, left = self.margin
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        fx = (np.clip(p[:, 0], x0, x1) - x0) / (x1 - x0)
        fy = (np.clip(p[:, 1], y0, y1) - y0) / (y1 - y0)
        return np.stack([left + fx * (self.width - left - right),
                         self.height - bottom - fy * (self.height - top - bottom)], axis=1)

    def svg(self, body: str, cls: str, extra: str = "") -> str:
        return (f'<svg class="map-svg {cls}" viewBox="0 0 {self.width} {self.height}" width="100%" '
                f'xmlns="http://www.w3.org/2000/svg" style="display:block;{extra}">{body}</svg>')


def map_frame(projection) -> MapFrame:
    return MapFrame(projection.extent)


def map_svg(projection, kind: str) -> str:
    """The map's background: the training names of the projection's sample, each a dot in its language's colour
    placed by the network's state after its last letter; hovering a dot names it. Drawn once per model."""
    frame = map_frame(projection)
    points, label_index = projection.sample()
    names = projection.sample_names()
    order = np.random.default_rng(0).permutation(len(points))  # a fixed mix: no language drawn over all others
    xy = frame.pixels(points)
    top, right, bottom, left = frame.margin
    W, H = frame.width, frame.height
    dots = []
    for i in order:
        lang = projection.labels[label_index[i]]
        color = language_color(lang)
        title = f"{names[i]} ({lang})" if names[i] else lang
        dots.append(f'<circle class="ref" data-i="{i}" cx="{xy[i, 0]:.1f}" cy="{xy[i, 1]:.1f}" r="3.2" '
                    f'fill="{color}" fill-opacity="0.6"><title>{esc(title)}</title></circle>')
    axis = projection.summary.get("axis_names") or ["map axis 1", "map axis 2"]
    mid_x, mid_y = left + (W - left - right) / 2, top + (H - top - bottom) / 2
    box = (f'<rect x="{left}" y="{top}" width="{W - left - right}" height="{H - top - bottom}" fill="none" '
           f'stroke="#bbb"/>'
           f'<text class="axis" x="{mid_x:.0f}" y="{H - 10}" font-size="13" text-anchor="middle" '
           f'fill="#555">{esc(axis[0])} →</text>'
           f'<text class="axis" x="12" y="{mid_y:.0f}" font-size="13" text-anchor="middle" fill="#555" '
           f'transform="rotate(-90 12 {mid_y:.0f})">{esc(axis[1])} →</text>')
    return frame.svg(box + "".join(dots), "map-base", f"aspect-ratio:{W}/{H}")


ARROW_DEFS = ('<defs><marker id="map-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
              'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#111"/></marker></defs>')


def map_path_svg(projection, points, chars: list[str], step: int, neighbours: Sequence[int] = ()) -> str:
    """Drawn over :func:`map_svg`: rings round the ``neighbours`` (indices into the projection's sample), the
    current name's path up to ``step`` with an arrowhead on every segment and each letter beside its point (the
    first in a square: the start), the current point as a large black dot, and on top of everything each
    language's name at the centre of its training names, placed clear of each other and of the path."""
    frame = map_frame(projection)
    xy = frame.pixels(points)
    step = max(0, min(int(step), len(xy) - 1))
    sample, _ = projection.sample()
    rings = frame.pixels(sample[list(neighbours)]) if len(neighbours) else np.zeros((0, 2))
    parts = [ARROW_DEFS]
    parts += [f'<circle class="map-neighbour" cx="{x:.1f}" cy="{y:.1f}" r="7" fill="none" stroke="#111" '
              f'stroke-width="1.5"/>' for x, y in rings]

    def polyline(pts, style) -> str:
        return f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" fill="none" {style}/>'

    parts.append(polyline(xy, 'class="map-future" stroke="#333" stroke-opacity="0.3" stroke-width="1.5" '
                              'stroke-dasharray="4 3"'))
    if step > 0:
        parts.append(polyline(xy[: step + 1], 'class="map-path" stroke="#111" stroke-width="2.5" '
                                              'stroke-linejoin="round" marker-mid="url(#map-arrow)" '
                                              'marker-end="url(#map-arrow)"'))
    x0, y0 = xy[0]
    parts.append(f'<rect class="map-start" x="{x0 - 6:.1f}" y="{y0 - 6:.1f}" width="12" height="12" fill="#fff" '
                 f'stroke="#111" stroke-width="2"><title>start: the state after the first letter</title></rect>')
    for i, (x, y) in enumerate(xy[: step + 1]):
        parts.append(f'<circle class="map-point" data-step="{i}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#fff" '
                     f'stroke="#111" stroke-width="1.5"/>'
                     f'<text class="step-letter" x="{x + 7:.1f}" y="{y - 6:.1f}" font-size="15" font-weight="700" '
                     f'font-family="IBM Plex Mono, monospace" fill="#111" stroke="#fff" stroke-width="3" '
                     f'paint-order="stroke">{esc(display_char(chars[i]))}</text>')
    x, y = xy[step]
    parts.append(f'<circle class="map-current" data-step="{step}" cx="{x:.1f}" cy="{y:.1f}" r="8" fill="#111" '
                 f'stroke="#fff" stroke-width="2.5"/>')
    parts += _language_labels(projection, frame, avoid=xy)
    return frame.svg("".join(parts), "map-marks", "position:absolute;left:0;top:0;pointer-events:none;"
                                                  "overflow:visible")


def _language_labels(projection, frame: MapFrame, size: float = 12.0, avoid=()) -> list[str]:
    """Each language's name near its centroid in dark ink, keyed by a swatch of its colour, nudged (up, down, then
    sideways) just enough to overlap neither a label already placed nor a point of ``avoid`` (the name's path)."""
    centroids = projection.centroids()
    finite = np.all(np.isfinite(centroids), axis=1)
    xy = frame.pixels(np.where(finite[:, None], centroids, 0))
    room = 1.5 * size  # placed for the phone's larger labels (html.CSS draws them at 18 px there)
    height = 1.25 * room
    placed = [(float(px), float(py), 22.0, 22.0) for px, py in np.reshape(avoid, (-1, 2))]  # (x, y, w, h)
    shifts = [(0.0, 0.0)] + [(dx * k * room, dy * k * 0.6 * height) for k in range(1, 16)
                             for dx, dy in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1))]
    out = []
    for i in sorted(np.flatnonzero(finite), key=lambda i: projection.labels[i]):
        label, (cx, cy) = projection.labels[i], xy[i]
        width = 0.55 * room * len(label) + room  # the text and its swatch
        top, right, bottom, left = frame.margin
        for dx, dy in shifts:  # kept inside the frame: a label past its edge would widen the page
            x = min(max(cx + dx, left + width / 2), frame.width - right - width / 2)
            y = min(max(cy + dy, top + height / 2), frame.height - bottom - height / 2)
            if all(abs(x - px) > (width + pw) / 2 or abs(y - py) > (height + ph) / 2 for px, py, pw, ph in placed):
                break
        placed.append((x, y, width, height))
        left = x - width / 2
        out.append(f'<g class="lang-label"><rect class="swatch" x="{left:.1f}" y="{y - size / 2:.1f}" '
                   f'width="{0.75 * size:.1f}" height="{0.75 * size:.1f}" rx="2" fill="{language_color(label)}" '
                   f'stroke="#fff"/><text class="lang" x="{left + size:.1f}" y="{y + size / 3:.1f}" '
                   f'text-anchor="start" fill="#111" data-color="{language_color(label)}">{esc(label)}</text></g>')
    return out


# ---------------------------------------------------------------------------------------------------------------
# Model card


def confusion_figure(metrics: dict, labels: list[str], title: str = "") -> Figure:
    """Test-set confusion matrix: rows true language, columns predicted; colour = share of the row, text = count."""
    counts = np.asarray((metrics.get("test") or {}).get("confusion_matrix") or np.zeros((len(labels),) * 2), float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = Figure(figsize=(7.6, 6.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_xlabel("predicted language")
    ax.set_ylabel("true language")
    for (i, j), c in np.ndenumerate(counts):
        if c:
            ax.text(j, i, f"{int(c)}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.55 else "#222")
    ax.set_title(title or "Confusion matrix (test set; colour = share of the true language's names)", fontsize=11)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of row")
    return fig


def training_curve_figure(metrics: dict, title: str = "") -> Figure:
    """Training loss and validation accuracy / macro-F1 per epoch; the selected epoch is a dashed line, keyed."""
    history = metrics.get("history") or []
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(8.4, 3.2), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, color="#1f77b4", label="loss")
    left.set_title("training loss", fontsize=11)
    right.plot(epochs, [h["val_accuracy"] for h in history], marker="o", ms=3, label="accuracy", color="#2ca02c")
    right.plot(epochs, [h["val_macro_f1"] for h in history], marker="o", ms=3, label="macro-F1", color="#d62728")
    right.set_ylim(0, 1)
    right.set_title("validation", fontsize=11)
    best = metrics.get("best_epoch")
    for ax in (left, right):
        if 0 < len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(best, color="#888", ls="--", lw=1, gid="best-epoch", label=f"kept: epoch {best}")
        ax.legend(frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def reliability_figure(metrics: dict, title: str = "") -> Figure:
    """The test split's reliability diagram before and after temperature scaling (``metrics["calibration"]``):
    per bin of the top probability, how often the top language is right; the diagonal is perfect calibration.
    Bars are the bins' accuracy, dots their mean confidence; an empty figure says so when not calibrated."""
    cal = metrics.get("calibration") or {}
    test = cal.get("test") or {}
    fig = Figure(figsize=(8.4, 3.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, when in zip(axes, ("before", "after")):
        bins = test.get(f"reliability_{when}") or []
        ax.plot([0, 1], [0, 1], color="#888", ls="--", lw=1, label="perfect calibration")
        filled = [b for b in bins if b["count"]]
        if filled:
            centres = [(b["lower"] + b["upper"]) / 2 for b in filled]
            ax.bar(centres, [b["accuracy"] for b in filled], width=filled[0]["upper"] - filled[0]["lower"],
                   color="#4c72b0", alpha=0.75, edgecolor="white", label="accuracy", gid=f"bars-{when}")
            ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="#d62728",
                    ms=3.5, label="mean confidence", gid=f"dots-{when}")
            T = cal.get("temperature", 1.0)
            heading = "before (T = 1)" if when == "before" else f"after (T = {T:.2f})"
            ax.set_title(f"{heading}: ECE {test.get(f'ece_{when}', float('nan')):.3f}", fontsize=11)
        else:
            ax.text(0.5, 0.5, "not calibrated", ha="center", va="center", color="#888")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top probability (15 bins)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share right")
    if test.get("reliability_after"):
        axes[1].legend(frameon=False, fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


CARD_FIGURES = ("confusion", "training", "reliability")


def card_figures(metrics: dict, labels: list[str], model_label: str) -> dict[str, Figure]:
    """One checkpoint's model-card figures, keyed by ``CARD_FIGURES``."""
    return {"confusion": confusion_figure(metrics, labels, f"{model_label}: confusion matrix (test set)"),
            "training": training_curve_figure(metrics, f"{model_label}: training"),
            "reliability": reliability_figure(metrics, f"{model_label}: reliability diagram (test set)")}

