"""``ZoomView``: one validation sample at full resolution: noisy, denoised, clean and an amplified error map.

One image pixel per half-block cell (``▀``: the upper pixel as foreground, the lower as background), so a 32x32
patch takes 32 columns and 16 rows. The four tiles sit side by side where the width allows and wrap to further rows
where it does not; the widget's height follows (``height: auto``), so a scrolling container can hold it.
"""
from __future__ import annotations

import math

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from engine.patches import as_array

GAP = 2          # columns between tiles
ERROR_GAIN = 4   # the error map shows |denoised - clean| x 4


def error_map(denoised, clean, gain: int = ERROR_GAIN) -> np.ndarray:
    """(3, H, W) uint8 heat map of the mean absolute error x ``gain``: black, red, yellow, white as it grows."""
    d, c = (as_array(t).astype(np.float32) for t in (denoised, clean))
    e = np.clip(np.abs(d - c).mean(0) * (gain / 255.0), 0, 1)
    heat = np.clip(np.stack([3 * e, 3 * e - 1, 3 * e - 2]), 0, 1)
    return np.rint(heat * 255).astype(np.uint8)


class ZoomView(Widget):
    """``show_sample(noisy, denoised, clean)`` with uint8 (3, H, W) patches of one sample (torch or numpy)."""

    DEFAULT_CSS = """
    ZoomView { width: 1fr; height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._tiles: list[tuple[str, np.ndarray]] = []
        self._strips: list[Strip] = []
        self._built_for: int | None = None
        self.per_row = 0  # tiles side by side in the last layout (4: all in one row)

    def show_sample(self, noisy, denoised, clean) -> None:
        noisy, denoised, clean = (as_array(t) for t in (noisy, denoised, clean))
        self._tiles = [("noisy", noisy), ("denoised", denoised), ("clean", clean),
                       (f"|error| x{ERROR_GAIN}", error_map(denoised, clean))]
        self._built_for = None
        self.refresh(layout=True)

    def _per_row(self, width: int) -> int:
        if not self._tiles:
            return 1
        w = self._tiles[0][1].shape[-1]
        return max(1, min(len(self._tiles), (width + GAP) // (w + GAP)))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if not self._tiles:
            return 1
        rows = math.ceil(len(self._tiles) / self._per_row(width))
        h = self._tiles[0][1].shape[-2]
        return rows * (1 + math.ceil(h / 2))

    def _build(self, width: int) -> None:
        self._built_for = width
        base = self.rich_style
        self._strips = []
        if not self._tiles:
            self._strips = [Strip([Segment("no samples yet: they appear after the first evaluation",
                                           base + Style(dim=True))])]
            return
        self.per_row = per_row = self._per_row(width)
        h, w = self._tiles[0][1].shape[-2:]
        styles: dict[tuple, Style] = {}

        def cell(top, bottom) -> Style:
            s = styles.get((top, bottom))
            if s is None:
                s = styles[(top, bottom)] = Style.from_color(Color.from_rgb(*top), Color.from_rgb(*bottom))
            return s

        gap = Segment(" " * GAP, base)
        for r in range(0, len(self._tiles), per_row):
            row = self._tiles[r:r + per_row]
            label = []
            for i, (name, _) in enumerate(row):
                if i:
                    label.append(gap)
                label.append(Segment(name[:w].center(w), base + Style(bold=True)))
            self._strips.append(Strip(label))
            # pixels as (H, W) lists of (r, g, b); an odd last row pairs with the background
            pix = [[list(map(tuple, line)) for line in t.transpose(1, 2, 0).tolist()] for _, t in row]
            for y in range(0, h, 2):
                segs = []
                for i, img in enumerate(pix):
                    if i:
                        segs.append(gap)
                    top = img[y]
                    if y + 1 < h:
                        segs.extend(Segment("▀", cell(a, b)) for a, b in zip(top, img[y + 1]))
                    else:
                        segs.extend(Segment("▀", Style(color=Color.from_rgb(*a), bgcolor=base.bgcolor))
                                    for a in top)
                self._strips.append(Strip(Segment.simplify(segs)))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._built_for != width:
            self._build(width)
        strip = self._strips[y] if y < len(self._strips) else Strip.blank(width, self.rich_style)
        return strip.adjust_cell_length(width, self.rich_style)
