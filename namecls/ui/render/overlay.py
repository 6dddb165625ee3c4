"""A figure rendered to PNG once, with the current character marked in HTML on top of it.

Stepping through a name then sends a few hundred bytes (the mark) instead of a new figure (0.1-0.3 s a render).
The app stacks :meth:`FigureImage.image_html` and :meth:`FigureImage.overlay_html` in one box (CSS ``.fig-stack``).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from matplotlib.figure import Figure

from .html import esc

STEP_AXES = "step-axes"  # gid of the axes whose x positions are the name's characters


def _floats(limits: tuple[float, float]) -> tuple[float, float]:
    """An axes' (low, high) limits as Python floats."""
    return float(limits[0]), float(limits[1])


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


@dataclass(frozen=True)
class FigureImage:
    """A figure as a PNG data URL, with the positions of its step axes (gid ``STEP_AXES``)."""

    src: str  # data: URL of the PNG
    width: int  # pixels
    height: int
    axes: tuple[AxesBox, ...]

    @classmethod
    def from_figure(cls, fig: Figure, dpi: int = 100) -> "FigureImage":
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)  # no bbox_inches="tight": it would move the axes
        w, h = (int(round(v * dpi)) for v in fig.get_size_inches())
        boxes = tuple(AxesBox(p.x0, p.y0, p.width, p.height, _floats(ax.get_xlim()), _floats(ax.get_ylim()))
                      for ax in fig.axes if ax.get_gid() == STEP_AXES for p in [ax.get_position()])
        return cls("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), w, h, boxes)

    def column_box(self, axes: int, step: int) -> tuple[float, float, float, float]:
        """(left, top, width, height) in percent of the image: the data column of character ``step``."""
        box = self.axes[axes]
        x0, x1 = box.x(step - 0.5), box.x(step + 0.5)
        return 100 * x0, 100 * (1 - box.bottom - box.height), 100 * (x1 - x0), 100 * box.height

    def _box(self, inner: str, extra: str = "") -> str:
        return (f'<div class="fig-image" style="position:relative;width:100%;max-width:{self.width}px;'
                f'aspect-ratio:{self.width}/{self.height};{extra}">{inner}</div>')

    def image_html(self, alt: str = "") -> str:
        """The image alone, scaled to its container's width (sent once per trace)."""
        return self._box(f'<img src="{self.src}" alt="{esc(alt)}" width="{self.width}" height="{self.height}" '
                         f'style="display:block;width:100%;height:auto">')

    def overlay_html(self, step: int) -> str:
        """A band over column ``step`` of every step axes, in a transparent box the size of :meth:`image_html`."""
        marks = []
        for i in range(len(self.axes)):
            left, top, width, height = self.column_box(i, step)
            marks.append(f'<div class="step-mark" data-step="{step}" data-axes="{i}" style="{_MARK_STYLE}'
                         f'left:{left:.3f}%;top:{top:.3f}%;width:{width:.3f}%;height:{height:.3f}%"></div>')
        return self._box("".join(marks), "pointer-events:none")


# The current letter in neutral ink: red and blue mean "lowered / raised the answer" everywhere else.
_MARK_STYLE = ("position:absolute;box-sizing:border-box;background:rgba(17,17,17,0.08);"
               "border-left:1.5px dashed #111;border-right:1.5px dashed #111;pointer-events:none;")
