"""Colours used everywhere in the app: one fixed colour per language, and the colour scales of the figures.

A language's colour is a function of its name alone (:func:`language_color`), never of its place in a model's label
list: a model trained on 3 languages draws Chinese in the same colour as the 18-language RNN and GRU beside it.

``LANGUAGE_COLORS`` were picked greedily, each as far as possible (CAM02-UCS distance) from those already chosen,
among sRGB colours of middle lightness and clear chroma, so that each reads on white and under a white label halo;
the smallest distance between two of them is ~22 CAM02-UCS units (tests/test_ui.py checks it with colorspacious).
Not safe for every kind of colour blindness: 18 colours cannot be. Labels and hover text always name the language.
"""

from __future__ import annotations

import functools
import zlib
from typing import NotRequired, TypedDict

from matplotlib import colormaps
from matplotlib.colors import to_hex

LANGUAGE_COLORS = [
    "#1a73b3", "#ff0000", "#66cc00", "#f266ff", "#594d1a", "#8c0066", "#00ccbf", "#cc9966", "#8c00f2",
    "#008c4d", "#a6a6cc", "#f2008c", "#990000", "#8c668c", "#1a5959", "#8c8c00", "#00b3ff", "#b35900",
]
# The data's 18 languages (its file names, sorted: the committed checkpoints' label order), each with its colour.
LANGUAGES = ("Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish", "Italian",
             "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Scottish", "Spanish", "Vietnamese")
_BY_NAME = dict(zip(LANGUAGES, LANGUAGE_COLORS))


class Scale(TypedDict):
    """A colour scale: values from ``vmin`` to ``vmax`` on the matplotlib colormap ``cmap``; ``what`` they are."""

    vmin: float
    vmax: float
    cmap: str
    what: NotRequired[str]


# One visual language across the app: hue means "for or against the answer" (blue raised it, red lowered it: the
# letters, the units' contributions), grey means a state's value (light low, dark high: the hidden units, the
# gates), and the 18 language colours mean languages. A state never borrows the red/blue of an effect.
# The range of each model's hidden state: the RNN's is a sigmoid (0 … 1), the GRU's a tanh-bounded mix (−1 … 1).
STATE_SCALES: dict[str, Scale] = {
    "rnn": {"vmin": 0.0, "vmax": 1.0, "cmap": "Greys", "what": "unit's value, 0 … 1"},
    "gru": {"vmin": -1.0, "vmax": 1.0, "cmap": "Greys", "what": "unit's value, −1 … 1"},
}
# Gates (the GRU's update and reset gates) are fractions, 0 … 1, on the same grey.
GATE_SCALE: Scale = {"vmin": 0.0, "vmax": 1.0, "cmap": "Greys", "what": "gate, 0 … 1"}
# What moved the answer: blue for, red against, white for no change; saturated at ±2 (log-probability, or logit).
ATTRIBUTION_SCALE: Scale = {"vmin": -2.0, "vmax": 2.0, "cmap": "RdBu"}
FOR_COLOR, AGAINST_COLOR = "#2166ac", "#b2182b"  # RdBu's ends: bars of what raised / lowered the answer


def language_color(language: str) -> str:
    """The fixed colour of ``language``, by its name: the same in every model's figures and keys, whichever
    languages the model knows. A language outside :data:`LANGUAGES` (another data folder's) gets one of the 18
    colours picked by a checksum of its name: stable, but it may share a colour with another language."""
    color = _BY_NAME.get(language)
    if color is None:
        color = LANGUAGE_COLORS[zlib.crc32(str(language).encode("utf-8")) % len(LANGUAGE_COLORS)]
    return color


@functools.lru_cache(maxsize=None)
def _colormap(name: str):
    """One copy of a matplotlib colour map per name: ``colormaps[name]`` builds a fresh copy (and its 256-colour
    table) on every lookup, which was four fifths of a Step-through step's server time."""
    return colormaps[name]


def scale_color(value: float, scale: Scale) -> str:
    """``value`` on ``scale`` (a dict with vmin, vmax, cmap) as a hex colour; values outside are clipped."""
    lo, hi = scale["vmin"], scale["vmax"]
    t = min(1.0, max(0.0, (float(value) - lo) / (hi - lo)))
    return to_hex(_colormap(scale["cmap"])(t))


def gradient_css(scale: Scale, stops: int = 11) -> str:
    """A CSS linear-gradient (left to right) of ``scale``'s colour map: the key of a colour bar."""
    colors = ", ".join(to_hex(_colormap(scale["cmap"])(i / (stops - 1))) for i in range(stops))
    return f"linear-gradient(to right, {colors})"
