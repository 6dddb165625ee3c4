"""What the app shows, computed without a server: figures, tables and small HTML fragments.

Every function here takes plain data (a :class:`~namecls.inference.Trace`, a metrics dict, result rows) and returns
a ``matplotlib.figure.Figure`` (object API only, no pyplot: safe in the server's worker threads), a pandas
``DataFrame``, a dict for ``gr.Label``, or an HTML/Markdown string in which every piece of user text is escaped.

Steps are 0-based indices into the name's characters: step ``t`` is the state after reading ``chars[t]``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .data import Normalized

MODEL_LABELS = {"rnn": "RNN", "gru": "GRU"}
STEP_AXES = "step-axes"  # gid of the axes whose x positions are the name's characters (FigureImage marks them)

# The range of each model's hidden state and a colour scale that suits it: the RNN's state is a sigmoid (0 … 1,
# sequential scale), the GRU's is a tanh-bounded interpolation (−1 … 1, diverging scale centred on 0).
STATE_SCALES = {
    "rnn": {"vmin": 0.0, "vmax": 1.0, "cmap": "viridis", "what": "sigmoid state, 0 … 1"},
    "gru": {"vmin": -1.0, "vmax": 1.0, "cmap": "RdBu_r", "what": "GRU state, −1 … 1"},
}
LANGUAGE_COLORS = [  # 18 saturated colours (tab10, then Dark2), fixed per language so charts side by side agree
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#333333",
]

LIMITATIONS_MD = """\
### Limitations — read before you trust an answer
- **A surname is not a nationality, an ethnicity or a person's origin.** The model guesses which *language's list
  of surnames* a spelling most resembles. People marry, migrate, transliterate and change names.
- **18 languages only.** Every input gets one of them, however foreign: a Turkish name like *Demirkan* still comes
  out as one of these 18. The *not sure* flag (a top probability below a threshold chosen on validation names)
  catches many names from elsewhere, not all: a foreign name that looks like one of the 18 gets a confident answer.
- **Skewed data.** Russian is 47% of the data's rows (9,408 of 20,074); Vietnamese has 73 rows, Portuguese 74. Small
  languages are predicted less reliably: look at the per-language recall, not only the accuracy.
- **Probabilities are calibrated on average, not per name.** A temperature fitted on validation names makes "80%"
  right about 80% of the time over many names of these 18 languages (see the reliability diagram); it promises
  nothing for names from elsewhere. Names shorter than three letters, and
  letters outside `a-z A-Z .,:;-'` (dropped after transliteration with unidecode), leave little to go on.
- **Dirty labels.** The source lists contain duplicates, 465 name strings listed under more than one language, and
  24 lines "To The First Page" in the Russian file.
"""

PROTOCOL_TEXT = {
    "clean": "unique (name, language) pairs, split 80/10/10 into train / validation / test, grouped by name string "
             "(no name is in two parts) and stratified by language",
    "seed": "the PyTorch tutorial's protocol: a stratified 10% test split over all rows (duplicates included), "
            "a tenth of the rest held out for validation",
}


# ---------------------------------------------------------------------------------------------------------------
# Small text helpers


def esc(text) -> str:
    """HTML-escape user text; also ``{ } $``, so no template syntax of the page ever sees it."""
    return (html.escape(str(text), quote=True).replace("{", "&#123;").replace("}", "&#125;")
            .replace("$", "&#36;"))


def display_char(c: str) -> str:
    """A character as a tick label: a space becomes a visible '␣'."""
    return "␣" if c == " " else c


def top_k_dict(pairs: list[tuple[str, float]]) -> dict[str, float]:
    """[(language, probability)] → {language: probability} with plain floats, in the given order (gr.Label)."""
    return {lang: float(p) for lang, p in pairs}


def normalisation_html(norm: Normalized) -> str:
    """One line saying what normalisation did, e.g. ``Ślusàrski → Slusarski``, and which characters it dropped.

    All user text is HTML-escaped: ``<script>`` is shown, never run.
    """
    original, text = esc(norm.original), esc(norm.text)
    if not norm.changed and not norm.dropped:
        body = f"<code>{text}</code> is read as typed."
    else:
        body = f"<code>{original}</code> → <code>{text}</code>"
    if norm.dropped:
        dropped = " ".join(f"<code>{esc(c)}</code>" for c in norm.dropped)
        body += f" · dropped: {dropped}"
    return f'<div class="norm-line">Normalisation: {body}</div>'


def confidence_html(details: dict, n_labels: int = 18) -> str:
    """One line beside the answer saying how sure the network is, from :func:`namecls.service.predict_details`:
    plainly "not sure" when the low-confidence flag is up."""
    top, threshold, h = details["top_probability"], details["threshold"], details["entropy"]
    numbers = (f"top probability {percent(top)}, threshold {percent(threshold)} (chosen on validation names); "
               f"entropy {h:.2f} nats of at most {math.log(n_labels):.2f}")
    if details["low_confidence"]:
        return (f'<div class="confidence low" data-low-confidence="true" style="border-left:4px solid #d62728;'
                f'padding:0.35rem 0.6rem;background:rgba(214,39,40,0.08)"><b>Not sure:</b> this name may be from '
                f'none of the {n_labels} languages, or the network cannot tell them apart here '
                f'<span class="small-note">({numbers})</span></div>')
    return (f'<div class="confidence ok" data-low-confidence="false" style="border-left:4px solid #2ca02c;'
            f'padding:0.35rem 0.6rem"><b>Confident</b> among the {n_labels} languages; a name from elsewhere can '
            f'still look like one of them <span class="small-note">({numbers})</span></div>')


def name_html(chars: list[str], step: int) -> str:
    """The normalised name in large letters: read prefix, current character highlighted, the rest dimmed."""
    step = clamp_step(step, len(chars))
    spans = []
    for i, c in enumerate(chars):
        cls = "done" if i < step else "current" if i == step else "todo"
        shown = "&nbsp;" if c == " " else esc(c)
        spans.append(f'<span class="ch {cls}" data-step="{i}" style="{_CHAR_STYLE[cls]}">{shown}</span>')
    prefix = esc("".join(chars[: step + 1]))
    current = esc(display_char(chars[step]))
    caption = (f'<div class="step-caption">Character <b>{step + 1}</b> of {len(chars)}: '
               f'<code>{current}</code> · prefix <code>{prefix}</code></div>')
    return (f'<div class="trace-name" style="font-family:ui-monospace,monospace;font-size:2.1rem;'
            f'line-height:1.5;letter-spacing:0.04em">{"".join(spans)}</div>{caption}')


_CHAR_STYLE = {
    "done": "padding:0 0.08em;",
    "current": "padding:0 0.08em;background:#d62728;color:#fff;border-radius:0.2em;font-weight:700;",
    "todo": "padding:0 0.08em;opacity:0.35;",
}


def clamp_step(step, length: int) -> int:
    """A valid 0-based step for a name of ``length`` characters (non-numbers → the last step)."""
    try:
        step = int(step)
    except (TypeError, ValueError):
        step = length - 1
    return max(0, min(step, length - 1))


def percent(p: float) -> str:
    return f"{100 * p:.1f}%"


# ---------------------------------------------------------------------------------------------------------------
# Step through


def step_top_k(trace, step: int, k: int) -> dict[str, float]:
    """The top-k prediction for the prefix ending at ``step`` (for gr.Label)."""
    return top_k_dict(trace.top(clamp_step(step, len(trace.chars)), k))


def initial_state(classifier) -> np.ndarray:
    """(L, H): the state before the first character: the RNN's learned ``h0``, zeros for the GRU."""
    layers, hidden = classifier.config["model"].get("num_layers", 1), classifier.config["model"]["hidden_size"]
    h0 = getattr(classifier.model, "h0", None)
    if h0 is not None:
        return h0.detach().cpu().numpy().reshape(1, -1).astype(np.float32)
    return np.zeros((layers, hidden), dtype=np.float32)


def top_changes(trace, step: int, n: int = 8, initial: np.ndarray | None = None):
    """The ``n`` (layer, unit) pairs whose value moved most when character ``step`` was read, largest first.

    Returns arrays (layer, unit, before, after, change); layers and units are 0-based. ``initial`` (L, H) is the
    state before the first character (default zeros).
    """
    layers = np.asarray(trace.layers)  # (L, T, H)
    step = clamp_step(step, layers.shape[1])
    after = layers[:, step]
    if step > 0:
        before = layers[:, step - 1]
    elif initial is None:
        before = np.zeros_like(after)
    else:
        before = np.asarray(initial, dtype=after.dtype).reshape(after.shape)
    delta = after - before
    flat = np.argsort(-np.abs(delta), axis=None, kind="stable")[: max(1, n)]
    layer, unit = np.unravel_index(flat, delta.shape)
    return layer, unit, before[layer, unit], after[layer, unit], delta[layer, unit]


def changed_units(trace, step: int, n: int = 8, initial: np.ndarray | None = None) -> pd.DataFrame:
    """Table of :func:`top_changes`: unit ("#37", or "L2 #37" when there are several layers), before, after,
    change (rounded to 3 decimals)."""
    layer, unit, before, after, delta = top_changes(trace, step, n, initial)
    many = np.asarray(trace.layers).shape[0] > 1
    return pd.DataFrame({
        "unit": [f"L{l + 1} #{u}" if many else f"#{u}" for l, u in zip(layer, unit)],
        "before": np.round(before.astype(float), 3),
        "after": np.round(after.astype(float), 3),
        "change": np.round(delta.astype(float), 3),
    })


def _char_axis(ax, chars: list[str]) -> None:
    ax.set_xticks(range(len(chars)), [display_char(c) for c in chars])
    ax.tick_params(axis="x", length=0, labelsize=11)


def _fixed_axes(fig: Figure, rows: int, left: float, right: float, bottom: float, top: float, gap: float = 0.0):
    """``rows`` stacked axes with margins in inches (fixed layout: cheaper than constrained layout, and the
    pixel position of every data point is known before drawing)."""
    w, h = fig.get_size_inches()
    panel = (h - bottom - top - gap * (rows - 1)) / rows
    axes = []
    for i in range(rows):
        y = h - top - (i + 1) * panel - i * gap
        axes.append(fig.add_axes((left / w, y / h, 1 - (left + right) / w, panel / h), gid=STEP_AXES))
    return axes


def heatmap_figure(trace, kind: str) -> Figure:
    """Hidden units × characters, one panel per layer, on the state's colour scale.

    Panel ``i``'s image data is ``trace.layers[i].T`` (units down the y axis, characters along the x axis, column
    ``t`` = the state after character ``t``); the colour limits are the state's range for ``kind``
    (``STATE_SCALES``). The current step is marked over the rendered image, see :class:`FigureImage`.
    """
    scale = STATE_SCALES[kind]
    layers = np.asarray(trace.layers)
    n_layers, T, H = layers.shape
    width = min(11.0, max(7.6, 1.7 + 0.34 * T))
    fig = Figure(figsize=(width, 0.75 + 2.3 * n_layers + 0.2 * (n_layers - 1)), dpi=100)
    axes = _fixed_axes(fig, n_layers, left=0.8, right=0.95, bottom=0.35, top=0.4, gap=0.2)
    image = None
    for i, ax in enumerate(axes):
        image = ax.imshow(layers[i].T, aspect="auto", interpolation="nearest", cmap=scale["cmap"],
                          vmin=scale["vmin"], vmax=scale["vmax"])
        ax.set_ylabel(f"layer {i + 1} unit" if n_layers > 1 else "hidden unit", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        if i < n_layers - 1:
            ax.set_xticks([])
        else:
            _char_axis(ax, trace.chars)
    axes[0].set_title(f"{MODEL_LABELS.get(kind, kind)} hidden state after each character ({scale['what']})",
                      fontsize=10, loc="left")
    w, h = fig.get_size_inches()
    cax = fig.add_axes(((w - 0.8) / w, 0.35 / h, 0.14 / w, (h - 0.75) / h))
    fig.colorbar(image, cax=cax)
    cax.tick_params(labelsize=8)
    return fig


def trajectory_languages(trace, n: int = 5) -> list[str]:
    """The ``n`` languages that reach the highest probability at any prefix, final top-1 first."""
    probs = np.asarray(trace.probs)
    peak = probs.max(axis=0)
    order = [int(i) for i in np.argsort(-peak, kind="stable")[:n]]
    final = int(np.argmax(probs[-1]))
    if final in order:
        order.remove(final)
    else:
        order = order[: n - 1]
    return [trace.labels[i] for i in [final, *order]]


def trajectory_figure(trace, n: int = 5, title: str | None = None, min_width: float = 7.6) -> Figure:
    """The probability of the ``n`` top languages (:func:`trajectory_languages`) after each prefix."""
    probs = np.asarray(trace.probs)
    T = probs.shape[0]
    chosen = trajectory_languages(trace, n)
    width = min(11.0, max(min_width, 2.6 + 0.34 * T))
    fig = Figure(figsize=(width, 2.9), dpi=100)
    (ax,) = _fixed_axes(fig, 1, left=0.6, right=1.45, bottom=0.35, top=0.35)
    x = np.arange(T)
    for rank, lang in enumerate(chosen):
        j = trace.labels.index(lang)
        ax.plot(x, probs[:, j], marker="o", ms=4 if rank else 5, lw=1.6 if rank else 3, zorder=3 if rank else 4,
                label=lang, color=LANGUAGE_COLORS[j % len(LANGUAGE_COLORS)])
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("probability", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    _char_axis(ax, trace.chars)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    ax.set_title(title or "Probability of the top languages after each prefix", fontsize=10, loc="left")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# A figure rendered once, with the current step marked in HTML on top of it


@dataclass(frozen=True)
class AxesBox:
    """Where one axes' data area sits in its figure (fractions, origin bottom-left) and its data limits."""

    left: float
    bottom: float
    width: float
    height: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def x(self, value: float) -> float:
        """Data x → fraction of the figure's width from the left."""
        return self.left + (value - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * self.width

    def y_top(self, value: float) -> float:
        """Data y → fraction of the figure's height from the top."""
        return 1 - (self.bottom + (value - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * self.height)


@dataclass(frozen=True)
class FigureImage:
    """A figure rendered to PNG once; :meth:`html` draws it with character column ``step`` outlined on top.

    Stepping through a name then costs a few string operations instead of a new figure (0.3-1 s per render).
    """

    src: str  # data: URL of the PNG
    width: int  # pixels
    height: int
    axes: tuple[AxesBox, ...]
    kind: str  # "heatmap" (outlined column) or "lines" (shaded band)

    @classmethod
    def from_figure(cls, fig: Figure, kind: str = "heatmap", dpi: int = 100, gid: str = STEP_AXES) -> "FigureImage":
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)  # no bbox_inches="tight": it would move the axes
        w, h = (int(round(v * dpi)) for v in fig.get_size_inches())
        boxes = []
        for ax in fig.axes:
            if ax.get_gid() != gid:
                continue
            pos = ax.get_position()
            boxes.append(AxesBox(pos.x0, pos.y0, pos.width, pos.height, tuple(map(float, ax.get_xlim())),
                                 tuple(map(float, ax.get_ylim()))))
        src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        return cls(src, w, h, tuple(boxes), kind)

    def column_box(self, axes: int, step: int) -> tuple[float, float, float, float]:
        """(left, top, width, height) in percent of the image: the data column of character ``step``."""
        box = self.axes[axes]
        x0, x1 = box.x(step - 0.5), box.x(step + 0.5)
        top = 1 - box.bottom - box.height
        return 100 * x0, 100 * top, 100 * (x1 - x0), 100 * box.height

    def marks(self, step: int | None = None, units: list[tuple[int, int]] = ()) -> str:
        """Absolutely positioned boxes (percent of the image): column ``step`` outlined in every axes, and a tick
        left of each ``(layer, unit)`` row in ``units`` (heatmaps: the units that changed most)."""
        marks = []
        if step is not None:
            for i in range(len(self.axes)):
                left, top, width, height = self.column_box(i, step)
                marks.append(f'<div class="step-mark {self.kind}" data-step="{step}" data-axes="{i}" '
                             f'style="{_MARK_STYLE[self.kind]}left:{left:.3f}%;top:{top:.3f}%;'
                             f'width:{width:.3f}%;height:{height:.3f}%"></div>')
        for layer, unit in units:
            if layer < len(self.axes):
                box = self.axes[layer]
                middle = 100 * box.y_top(unit)  # the row's centre
                marks.append(f'<div class="unit-mark" data-layer="{layer}" data-unit="{unit}" '
                             f'style="{_UNIT_STYLE}left:{100 * box.left - 1.6:.3f}%;'
                             f'top:calc({middle:.3f}% - 3px)"></div>')
        return "".join(marks)

    def _box(self, inner: str, extra: str = "") -> str:
        return (f'<div class="fig-image" style="position:relative;width:100%;max-width:{self.width}px;'
                f'aspect-ratio:{self.width}/{self.height};{extra}">{inner}</div>')

    def image_html(self, alt: str = "") -> str:
        """The image alone, scaled to its container's width (sent once per trace)."""
        return self._box(f'<img src="{self.src}" alt="{esc(alt)}" width="{self.width}" height="{self.height}" '
                         f'style="display:block;width:100%;height:auto">')

    def overlay_html(self, step: int | None = None, units: list[tuple[int, int]] = ()) -> str:
        """Only the marks, in a transparent box the same size as :meth:`image_html`'s: laid over the image
        (the app stacks the two), a step change sends a few hundred bytes instead of the image again."""
        return self._box(self.marks(step, units), "pointer-events:none")

    def html(self, step: int | None = None, alt: str = "", units: list[tuple[int, int]] = ()) -> str:
        """Image and marks in one fragment."""
        return self._box(f'<img src="{self.src}" alt="{esc(alt)}" width="{self.width}" height="{self.height}" '
                         f'style="display:block;width:100%;height:auto">{self.marks(step, units)}')


_MARK_STYLE = {
    "heatmap": "position:absolute;box-sizing:border-box;border:2px solid #000;"
               "box-shadow:0 0 0 1px #fff,inset 0 0 0 1px #fff;pointer-events:none;",
    "lines": "position:absolute;box-sizing:border-box;background:rgba(214,39,40,0.10);"
             "border-left:1px dashed #d62728;border-right:1px dashed #d62728;pointer-events:none;",
}
_UNIT_STYLE = ("position:absolute;width:1.3%;height:6px;background:#d62728;"
               "clip-path:polygon(0 0,100% 50%,0 100%);pointer-events:none;")


# ---------------------------------------------------------------------------------------------------------------
# The hidden-state map: training names scattered once per model, the current name's path drawn on top per step

MAP_AXES = "map-axes"  # gid of the map's data axes (FigureImage boxes: the path's pixel positions)
NO_MAP_HTML = ('<div class="small-note">This checkpoint has no hidden-state map. Add one with '
               '<code>python -m namecls.calibration --checkpoint &lt;folder&gt; --data-dir &lt;names&gt;</code>.</div>')


def map_figure(projection, kind: str) -> Figure:
    """The training names' final hidden states on the 2-D map, coloured by language, each language's name at its
    centroid. Data axes (gid ``MAP_AXES``) span ``projection.extent``; the points are the stored per-language
    sample, drawn in a fixed shuffled order so that no language hides the others."""
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    points, labels = projection.sample()
    order = np.random.default_rng(0).permutation(len(points))
    colors = np.array([LANGUAGE_COLORS[i % len(LANGUAGE_COLORS)] for i in range(len(projection.labels))])
    fig = Figure(figsize=(9.4, 5.6), dpi=100)
    (ax,) = _fixed_axes(fig, 1, left=0.55, right=1.75, bottom=0.5, top=0.4)
    ax.set_gid(MAP_AXES)
    if len(points):
        ax.scatter(points[order, 0], points[order, 1], s=10, c=colors[labels[order]], alpha=0.5, linewidths=0)
    x0, x1, y0, y1 = projection.extent
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    centroids = projection.centroids()
    for i, (x, y) in _label_positions(ax, projection.labels, centroids).items():
        if x0 < centroids[i][0] < x1 and y0 < centroids[i][1] < y1:
            ax.text(x, y, projection.labels[i], fontsize=8, fontweight="bold", color=colors[i], ha="center",
                    va="center", path_effects=halo, zorder=5)
    ratio = projection.summary.get("explained_variance_ratio") or [float("nan")] * 2
    ax.set_xlabel(f"map axis 1 ({percent(ratio[0])} of the variance)", fontsize=9)
    ax.set_ylabel(f"map axis 2 ({percent(ratio[1])})", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.2)
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=colors[i], label=lang)
               for i, lang in enumerate(projection.labels)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8,
              handletextpad=0.2, borderaxespad=0.0, labelspacing=0.35)
    ax.set_title(f"{MODEL_LABELS.get(kind, kind)} hidden-state map: training names by language (PCA of the state "
                 f"after the last letter)", fontsize=10, loc="left")
    return fig


def _label_positions(ax, labels: list[str], centroids: np.ndarray, fontsize: float = 8.0) -> dict:
    """Where to write each language's name: at its centroid, or moved up or down just enough not to overlap a
    name already placed (approximate text boxes in pixels; the axes' layout is fixed, so they are known now)."""
    to_pixels, placed, where = ax.transData, [], {}
    height = 1.25 * fontsize * ax.figure.dpi / 72
    for i in sorted(range(len(labels)), key=lambda i: labels[i]):
        if not np.all(np.isfinite(centroids[i])):
            continue
        cx, cy = to_pixels.transform(centroids[i])
        width = 0.62 * fontsize * len(labels[i]) * ax.figure.dpi / 72
        for shift in [0] + [s * k for k in range(1, 12) for s in (1, -1)]:
            y = cy + shift * height * 0.55
            if all(abs(cx - px) > (width + pw) / 2 or abs(y - py) > height for px, py, pw in placed):
                break
        placed.append((cx, y, width))
        where[i] = tuple(to_pixels.inverted().transform((cx, y)))
    return where


_MAP_CACHE: dict = {}  # (id(projection), kind) -> (projection, FigureImage): one rendering per loaded model


def map_image(classifier) -> FigureImage | None:
    """The classifier's map background (:func:`map_figure` as a :class:`FigureImage`), rendered on first use and
    kept for the life of the process; None when the checkpoint has no map."""
    projection = getattr(classifier, "projection", None)
    if projection is None:
        return None
    key = (id(projection), classifier.kind)
    hit = _MAP_CACHE.get(key)
    if hit is None or hit[0] is not projection:
        hit = (projection, FigureImage.from_figure(map_figure(projection, classifier.kind), "map", gid=MAP_AXES))
        _MAP_CACHE[key] = hit
    return hit[1]


def map_path_svg(image: FigureImage, points, chars: list[str], step: int) -> str:
    """An SVG in the image's pixel coordinates: the whole path faint, prefixes ``0 … step`` solid with each letter
    beside its point, and the current step as a large red dot. Points off the map are pinned to its border."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    step = clamp_step(step, len(points))
    box, W, H = image.axes[0], image.width, image.height
    xs = np.clip(points[:, 0], *sorted(box.xlim))
    ys = np.clip(points[:, 1], *sorted(box.ylim))
    pixels = [(box.x(x) * W, box.y_top(y) * H) for x, y in zip(xs, ys)]

    def polyline(pts) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)

    parts = [f'<polyline class="map-future" points="{polyline(pixels)}" fill="none" stroke="#333" '
             f'stroke-opacity="0.35" stroke-width="1.5" stroke-dasharray="4 3"/>']
    if step > 0:
        parts.append(f'<polyline class="map-path" points="{polyline(pixels[: step + 1])}" fill="none" '
                     f'stroke="#111" stroke-width="2.5" stroke-linejoin="round"/>')
    for i, (x, y) in enumerate(pixels[: step + 1]):
        parts.append(f'<circle class="map-point" data-step="{i}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#fff" '
                     f'stroke="#111" stroke-width="1.5"/>')
    for i, (x, y) in enumerate(pixels[: step + 1]):
        parts.append(f'<text x="{x + 7:.1f}" y="{y - 6:.1f}" font-size="14" font-weight="700" '
                     f'font-family="ui-monospace,monospace" fill="#111" stroke="#fff" stroke-width="3" '
                     f'paint-order="stroke">{esc(display_char(chars[i]))}</text>')
    x, y = pixels[step]
    parts.append(f'<circle class="map-current" data-step="{step}" cx="{x:.1f}" cy="{y:.1f}" r="8" '
                 f'fill="#d62728" stroke="#fff" stroke-width="2.5"/>')
    return (f'<svg class="map-path-svg" viewBox="0 0 {W} {H}" width="100%" height="100%" '
            f'style="position:absolute;left:0;top:0;overflow:visible" xmlns="http://www.w3.org/2000/svg">'
            f'{"".join(parts)}</svg>')


# ---------------------------------------------------------------------------------------------------------------
# Everything the "Step through" tab shows for one name and model


@dataclass(frozen=True)
class TraceView:
    """A name's trace and its two figures, rendered once; :meth:`step` renders one step from them (cheap)."""

    trace: object  # namecls.Trace
    kind: str  # "rnn" | "gru"
    initial: np.ndarray  # (L, H): the state before the first character
    heatmap: FigureImage
    trajectory: FigureImage
    map: FigureImage | None = None  # the model's hidden-state map (shared by every trace of that model)

    @classmethod
    def build(cls, classifier, name: str) -> "TraceView":
        """Trace ``name`` (``ValueError`` on bad input) and render both figures (the map is rendered once per
        model, see :func:`map_image`)."""
        trace = classifier.trace(name)
        kind = classifier.kind
        return cls(trace, kind, initial_state(classifier),
                   FigureImage.from_figure(heatmap_figure(trace, kind), "heatmap"),
                   FigureImage.from_figure(trajectory_figure(trace), "lines"),
                   map_image(classifier))

    @property
    def length(self) -> int:
        return len(self.trace.chars)

    def images(self) -> tuple[str, str, str]:
        """(heatmap, trajectory, map) images as HTML: what a new trace sends once."""
        model = MODEL_LABELS[self.kind]
        name = "".join(self.trace.chars)
        return (self.heatmap.image_html(f"{model} hidden state after each character of {name}"),
                self.trajectory.image_html(f"{model}: probability of the top languages after each prefix of {name}"),
                self.map.image_html(f"{model} hidden-state map of the training names") if self.map else NO_MAP_HTML)

    def map_overlay(self, step: int) -> str:
        """The current name's path on the map up to 0-based ``step`` (an SVG over :meth:`images`' map)."""
        if self.map is None:
            return ""
        svg = map_path_svg(self.map, self.trace.map_points, self.trace.chars, clamp_step(step, self.length))
        return self.map._box(svg, "pointer-events:none")

    def step(self, step: int, k: int = 3, n_units: int = 8):
        """(name HTML, top-k dict, changed-units table, heatmap marks HTML, trajectory marks HTML, map path HTML)
        at 0-based ``step``: no model call and no figure, just text."""
        step = clamp_step(step, self.length)
        layer, unit, *_ = top_changes(self.trace, step, n_units, self.initial)
        marked = [(int(l), int(u)) for l, u in zip(layer, unit)]
        return (
            name_html(self.trace.chars, step),
            step_top_k(self.trace, step, k),
            changed_units(self.trace, step, n_units, self.initial),
            self.heatmap.overlay_html(step, units=marked),
            self.trajectory.overlay_html(step),
            self.map_overlay(step),
        )


def decision_step(trace) -> int:
    """The first step from which the final top-1 language stays top-1 until the end."""
    winners = np.asarray(trace.probs).argmax(axis=1)
    step = len(winners) - 1
    while step > 0 and winners[step - 1] == winners[-1]:
        step -= 1
    return int(step)


def decision_html(trace, model: str = "") -> str:
    """When the network made up its mind, e.g. 'Vietnamese (71.0%) leads from character 3 of 6 (Ngu) on'."""
    step = decision_step(trace)
    lang, p = trace.top(-1, 1)[0]
    prefix = "".join(trace.chars[: step + 1])
    who = f"{esc(model)}: " if model else ""
    return (f'<div class="decision">{who}<b>{esc(lang)}</b> ({percent(p)}) leads from character {step + 1} of '
            f'{len(trace.chars)} (<code>{esc(prefix)}</code>) to the end.</div>')


# ---------------------------------------------------------------------------------------------------------------
# Batch

BATCH_COLUMNS = ["name", "normalised", "top-1", "probability", "top-3", "error"]


def top3_text(top: dict[str, float]) -> str:
    return " · ".join(f"{lang} {percent(p)}" for lang, p in list(top.items())[:3])


def batch_table(rows: list[dict]) -> pd.DataFrame:
    """Result rows of :func:`namecls.service.predict_batch` → the table the Batch tab shows and exports."""
    records = []
    for row in rows:
        ok = row.get("error") is None
        records.append({
            "name": row["name"],
            "normalised": row.get("normalized") or "",
            "top-1": row["top1"] if ok else "",
            "probability": round(float(row["probability"]), 4) if ok else math.nan,
            "top-3": top3_text(row["top_k"]) if ok else "",
            "error": "" if ok else row["error"],
        })
    return pd.DataFrame.from_records(records, columns=BATCH_COLUMNS)


# ---------------------------------------------------------------------------------------------------------------
# Model card

HEADLINE_COLUMNS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "balanced_accuracy": "balanced accuracy",
                    "top3_accuracy": "top-3 accuracy"}


def headline_table(metrics_by_model: dict[str, dict]) -> pd.DataFrame:
    """Test-set headline numbers of each model and of the baselines (listed once if every model shares them)."""
    rows = []
    for kind, metrics in metrics_by_model.items():
        test = metrics.get("test") or {}
        rows.append({"model": MODEL_LABELS.get(kind, kind), **{v: test.get(k) for k, v in HEADLINE_COLUMNS.items()}})
    baselines = {kind: m.get("baselines") or {} for kind, m in metrics_by_model.items()}
    shared = len({repr(sorted(b.items())) for b in baselines.values()}) == 1
    names = {"majority": "baseline: always the most frequent language",
             "tfidf_logreg": "baseline: character n-gram TF-IDF + logistic regression"}
    for kind, base in baselines.items():
        for key, scores in base.items():
            label = names.get(key, f"baseline: {key}") + ("" if shared else f" ({MODEL_LABELS.get(kind, kind)} split)")
            rows.append({"model": label, **{v: scores.get(k) for k, v in HEADLINE_COLUMNS.items()}})
        if shared:
            break
    table = pd.DataFrame(rows, columns=["model", *HEADLINE_COLUMNS.values()])
    for col in HEADLINE_COLUMNS.values():
        table[col] = pd.to_numeric(table[col]).round(3)
    return table


def per_language_table(metrics: dict) -> pd.DataFrame:
    """Precision, recall, F1 and support of each language on the test set."""
    per = (metrics.get("test") or {}).get("per_language") or {}
    rows = [{"language": lang, "precision": round(s["precision"], 3), "recall": round(s["recall"], 3),
             "F1": round(s["f1"], 3), "support": int(s["support"])} for lang, s in per.items()]
    return pd.DataFrame(rows, columns=["language", "precision", "recall", "F1", "support"])


def confusion_figure(metrics: dict, labels: list[str], title: str = "") -> Figure:
    """Test-set confusion matrix: rows true language, columns predicted; colour = share of the row, text = count."""
    counts = np.asarray((metrics.get("test") or {}).get("confusion_matrix") or np.zeros((len(labels),) * 2), float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = Figure(figsize=(7.6, 6.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted language")
    ax.set_ylabel("true language")
    for (i, j), c in np.ndenumerate(counts):
        if c:
            ax.text(j, i, f"{int(c)}", ha="center", va="center", fontsize=6,
                    color="white" if share[i, j] > 0.55 else "#222")
    ax.set_title(title or "Confusion matrix (test set; colour = share of the true language's names)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of row")
    return fig


def training_curve_figure(metrics: dict, title: str = "") -> Figure:
    """Training loss and validation accuracy / macro-F1 per epoch; the selected epoch is marked."""
    history = metrics.get("history") or []
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(8.4, 3.0), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, color="#1f77b4")
    left.set_title("training loss", fontsize=10)
    right.plot(epochs, [h["val_accuracy"] for h in history], marker="o", ms=3, label="accuracy", color="#2ca02c")
    right.plot(epochs, [h["val_macro_f1"] for h in history], marker="o", ms=3, label="macro-F1", color="#d62728")
    right.set_ylim(0, 1)
    right.set_title("validation", fontsize=10)
    right.legend(frameon=False, fontsize=9)
    best = metrics.get("best_epoch")
    for ax in (left, right):
        if 0 < len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(best, color="#888", ls="--", lw=1, gid="best-epoch")
    if title:
        fig.suptitle(title, fontsize=10)
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
        ax.plot([0, 1], [0, 1], color="#888", ls="--", lw=1)
        filled = [b for b in bins if b["count"]]
        if filled:
            centres = [(b["lower"] + b["upper"]) / 2 for b in filled]
            ax.bar(centres, [b["accuracy"] for b in filled], width=filled[0]["upper"] - filled[0]["lower"],
                   color="#4c72b0", alpha=0.75, edgecolor="white", label="accuracy", gid=f"bars-{when}")
            ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="#d62728",
                    ms=3.5, label="mean confidence", gid=f"dots-{when}")
            T = cal.get("temperature", 1.0)
            heading = "before (T = 1)" if when == "before" else f"after (T = {T:.2f})"
            ax.set_title(f"{heading}: ECE {test.get(f'ece_{when}', float('nan')):.3f}", fontsize=10)
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
        fig.suptitle(title, fontsize=10)
    return fig


CARD_FIGURES = ("confusion", "training", "reliability")


def card_figures(metrics: dict, labels: list[str], model_label: str) -> dict[str, Figure]:
    """One checkpoint's model-card figures, keyed by ``CARD_FIGURES``: the test split's confusion matrix, the
    training curve, and the reliability diagram."""
    return {"confusion": confusion_figure(metrics, labels, f"{model_label}: confusion matrix (test set)"),
            "training": training_curve_figure(metrics, f"{model_label}: training"),
            "reliability": reliability_figure(metrics, f"{model_label}: reliability diagram (test set)")}


def calibration_md(metrics: dict) -> str:
    """Calibration and the low-confidence flag of one checkpoint in a few lines of Markdown (empty if none)."""
    cal, flag = metrics.get("calibration") or {}, metrics.get("low_confidence") or {}
    if not cal:
        return ""
    test, val = cal.get("test") or {}, cal.get("validation") or {}
    lines = [f"**Calibration** (temperature T = {cal['temperature']:.3f}, fitted on the validation split by minimum "
             f"NLL): expected calibration error on the test split {test.get('ece_before', float('nan')):.3f} → "
             f"**{test.get('ece_after', float('nan')):.3f}** (validation {val.get('ece_before', float('nan')):.3f} "
             f"→ {val.get('ece_after', float('nan')):.3f}); accuracy is unchanged (dividing by T keeps the order)."]
    if flag:
        rates = flag.get("test") or {}
        acc_f, acc_c = rates.get("accuracy_flagged"), rates.get("accuracy_confident")
        lines.append(f"**Not sure** when the top probability is below **{percent(flag['threshold'])}**: the largest "
                     f"threshold at which flagged validation names get the right language at most "
                     f"{percent(flag.get('target_accuracy', 0.5))} of the time. It flags "
                     f"{percent(rates.get('flag_rate', 0))} of test names (right "
                     f"{'n/a' if acc_f is None else percent(acc_f)} of the time, against "
                     f"{'n/a' if acc_c is None else percent(acc_c)} for the others).")
    return "\n\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def facts_table(config: dict, metrics: dict) -> pd.DataFrame:
    """Architecture, training settings, split sizes and provenance of one checkpoint, as (fact, value) rows."""
    model = config.get("model", {})
    train = config.get("train_config") or metrics.get("train_config") or {}
    sizes = metrics.get("split_sizes") or {}
    protocol = config.get("protocol", metrics.get("protocol", "?"))
    rows = [
        ("architecture", ", ".join(f"{k}={_fmt(v)}" for k, v in model.items() if k != "kind")),
        ("languages", len(config.get("labels", []))),
        ("protocol", f"{protocol}: {PROTOCOL_TEXT.get(protocol, '')}".rstrip(": ")),
        ("split seed", config.get("split_seed", metrics.get("split_seed", "?"))),
        ("split sizes (names)", ", ".join(f"{k} {v:,}" for k, v in sizes.items())),
        ("epochs run (selected)", f"{metrics.get('epochs_run', '?')} ({metrics.get('best_epoch', '?')})"),
        ("training time", _duration(metrics.get("training_seconds"))),
        ("training settings", ", ".join(f"{k}={_fmt(v)}" for k, v in train.items())),
        ("normalisation", config.get("normalization", "?")),
        ("data fingerprint", str(config.get("data_fingerprint", "?"))[:16] + "…"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (config.get("versions") or {}).items())),
    ]
    return pd.DataFrame([(k, str(v)) for k, v in rows], columns=["fact", "value"])


def test_share_md(metrics: dict, language: str = "Russian") -> str:
    """'Russian is 52% of this test set (932 of 1,805 names)', from the per-language support."""
    per = (metrics.get("test") or {}).get("per_language") or {}
    total = sum(s["support"] for s in per.values())
    if not total or language not in per:
        return ""
    n = per[language]["support"]
    return f"{language} is {percent(n / total)} of this test set ({n:,} of {total:,} names)."
