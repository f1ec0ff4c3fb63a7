"""``PsnrPlot``: validation PSNR against step, with the best point marked and reference lines: where a do-nothing
denoiser stands (the noisy input's own PSNR), the best so far, and the user's marks (``sessions.marks``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from textual.color import Color
from textual_plotext import PlotextPlot

from .loss_plot import BEST_COLOUR, SERIES_COLOURS, int_ticks, row_ticks

NOISY_COLOUR = (150, 150, 160)
MARK_COLOUR = (200, 120, 230)
LINE_ZOOM = 2.0   # reference lines may widen the y-range to this many times the curve's own span ...
LINE_REACH = 2.0  # ... or by this many dB; lines further off are named at the edge (``PsnrPlot._y_range``)


@dataclass(frozen=True)
class RefLine:
    """A horizontal line across the plot: ``kind`` is "noisy", "best" or "mark"."""
    kind: str
    psnr: float
    label: str


class PsnrPlot(PlotextPlot):
    """Live: ``add_point`` then ``redraw``. History: ``show_runs`` with one series per run. Reference lines:
    ``show_noisy`` (the noisy input's PSNR), ``show_marks`` (``Mark``s: psnr and label); the best so far is drawn
    when one run is shown."""

    def __init__(self, *, title: str = "validation PSNR (dB)", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self._runs: list[tuple[str, list[int], list[float]]] = [("", [], [])]
        self.noisy: float | None = None
        self.marks: list = []
        # what the last redraw showed: the y-limits, the lines left off them, the PSNR axis's ticks and labels
        self.ylim: tuple[float, float] | None = None
        self.off_scale: list[RefLine] = []
        self.yticks: tuple[list[float], list[str]] = ([], [])

    def add_point(self, step: int, psnr: float) -> None:
        if math.isfinite(psnr):
            _, steps, values = self._runs[0]
            steps.append(step)
            values.append(psnr)

    def show_noisy(self, psnr: float | None) -> None:
        """The PSNR of the noisy validation input itself: the baseline a denoiser has to beat."""
        if psnr is not None and math.isfinite(psnr):
            self.noisy = psnr

    def show_marks(self, marks) -> None:
        """Reference levels of the user's (``sessions.marks.Mark``: ``psnr``, ``label``)."""
        self.marks = list(marks)

    def clear_points(self) -> None:
        self._runs = [("", [], [])]

    def show_runs(self, runs: list[tuple[str, list[int], list[float]]]) -> None:
        cleaned = []
        for label, steps, values in runs:
            keep = [(s, v) for s, v in zip(steps, values) if v is not None and math.isfinite(v)]
            cleaned.append((label, [s for s, _ in keep], [v for _, v in keep]))
        self._runs = cleaned or [("", [], [])]
        self.redraw()

    @property
    def n_points(self) -> int:
        return sum(len(s) for _, s, _ in self._runs)

    @property
    def best(self) -> tuple[int, float] | None:
        """``(step, psnr)`` of the best point of the first series."""
        _, steps, values = self._runs[0]
        if not values:
            return None
        i = max(range(len(values)), key=values.__getitem__)
        return steps[i], values[i]

    @property
    def lines(self) -> list[RefLine]:
        """Every reference line there is to draw, lowest first (the best only for a single run with points)."""
        lines = [RefLine("mark", m.psnr, f"{m.label} {m.psnr:g} dB".strip()) for m in self.marks]
        if self.noisy is not None:
            lines.append(RefLine("noisy", self.noisy, f"noisy input {self.noisy:.1f} dB"))
        if len(self._runs) == 1 and self.best is not None:
            lines.append(RefLine("best", self.best[1], f"best {self.best[1]:.2f} dB"))
        return sorted(lines, key=lambda line: line.psnr)

    def _fit_title(self, best: float, step: int) -> str:
        """The longest title that fits: plotext silently drops a title wider than the plot area."""
        room = self.size.width - 10
        for title in (f"{self.title} · ★ best {best:.2f} @ step {step}", f"PSNR dB · ★ best {best:.2f} @ {step}",
                      f"★ {best:.2f} dB @ {step}"):
            if len(title) <= room:
                return title
        return ""

    def on_resize(self) -> None:
        self.redraw()  # the title is fitted to the width

    def _y_range(self, values: list[float], lines: list[RefLine]) -> tuple[float, float, list[RefLine]]:
        """The y-limits and the lines left off them. Lines join the curve's range nearest first, as long as the curve
        keeps at least half of the plot's height (``LINE_ZOOM``) or they add no more than ``LINE_REACH`` dB: a line
        further off (a goal of 30 dB over a run between 24 and 25.5) would squeeze the curve flat, where the tenths
        of a dB it gains are what a person watches for. Such a line is named at the plot's edge instead."""
        if not values:  # nothing measured yet: the lines alone
            lo, hi = (min(line.psnr for line in lines), max(line.psnr for line in lines)) if lines else (0.0, 0.0)
            off = []
        else:
            lo, hi = min(values), max(values)
            room = max(LINE_ZOOM * (hi - lo), hi - lo + LINE_REACH)
            off = []
            for line in sorted(lines, key=lambda line: max(lo - line.psnr, line.psnr - hi)):
                if max(hi, line.psnr) - min(lo, line.psnr) <= room + 1e-9:
                    lo, hi = min(lo, line.psnr), max(hi, line.psnr)
                else:
                    off.append(line)
        if not values or max(values) - min(values) < 1e-9:  # one point: plotext would stretch it over +-4 dB
            mid = values[0] if values else (lo + hi) / 2
            lo, hi = min(lo, mid - 1), max(hi, mid + 1)
        return lo, hi, off

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        lines = self.lines
        values = [v for _, _, vs in self._runs for v in vs]
        lo, hi, self.off_scale = self._y_range(values, lines)
        steps = [s for _, ss, _ in self._runs for s in ss]
        x0, x1 = (min(steps), max(steps)) if steps else (0, 1)
        if x0 == x1:  # one evaluation: the lines still run across, the point in the middle
            x0, x1 = x0 - 1, x1 + 1
        best = self.best
        title = self._fit_title(best[1], best[0]) if len(self._runs) == 1 and best else self.title
        xticks = int_ticks(steps)
        rows = self.size.height - 2 - bool(title) - bool(xticks[0])  # less the frame, the title, the step labels
        lo, hi, *ticks = row_ticks(lo, hi, rows)
        self.ylim, self.yticks = (lo, hi), tuple(ticks)
        self._draw_lines([line for line in lines if line not in self.off_scale], x0, x1, lo, hi, rows)
        for i, (label, steps_i, values_i) in enumerate(self._runs):
            if not steps_i:
                continue
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            plt.plot(steps_i, values_i, marker="braille", color=colour, label=label or None)
            j = max(range(len(values_i)), key=values_i.__getitem__)
            plt.scatter([steps_i[j]], [values_i[j]], marker="★", color=BEST_COLOUR)
        self._name_off_scale(x0, x1, lo, hi)
        plt.title(title)
        plt.ylim(lo, hi)
        plt.yticks(*self.yticks)
        plt.xticks(*xticks)
        self.refresh()

    def _draw_lines(self, lines: list[RefLine], x0: float, x1: float, lo: float, hi: float, rows: int) -> None:
        """Lines across the plot (drawn before the curve, which goes over them), each labelled at its right end, where
        a rising curve has gone past the lines below it and not reached those above; lines that fall on one row
        share a label, and a label on the star's row goes to the left end instead, so as not to cover the star. The
        best is dotted, unlabelled (the title names it, beside the star at its end) and drawn last: on a plot a few
        rows high it shares a row with a mark, and stays in sight."""
        plt = self.plt

        def row_of(psnr: float) -> int:  # plotext draws a value on the nearest row
            return round((psnr - lo) / (hi - lo) * (max(rows, 2) - 1))

        labels: dict[int, list[RefLine]] = {}
        for line in sorted(lines, key=lambda line: line.kind == "best"):
            plt.plot([x0, x1], [line.psnr] * 2, marker="┄" if line.kind == "best" else "─", color=_colour(line))
            if line.kind != "best":
                labels.setdefault(row_of(line.psnr), []).append(line)
        star = row_of(self.best[1]) if len(self._runs) == 1 and self.best else None
        for row, named in labels.items():
            plt.text(" · ".join(line.label for line in named), x0 if row == star else x1, named[0].psnr,
                     color=_colour(named[0]), background=self._canvas(), alignment="left" if row == star else "right")

    def _name_off_scale(self, x0: float, x1: float, lo: float, hi: float) -> None:
        """The lines kept off the scale, named at the edge they lie beyond (above: top left; below: bottom right)."""
        above = [line for line in self.off_scale if line.psnr > hi]
        below = [line for line in self.off_scale if line.psnr < lo]
        if above:
            self.plt.text("↑ " + " · ".join(line.label for line in above), x0, hi, color=_colour(above[0]),
                          background=self._canvas(), alignment="left")
        if below:
            self.plt.text("↓ " + " · ".join(line.label for line in below), x1, lo, color=_colour(below[0]),
                          background=self._canvas(), alignment="right")


    def _canvas(self) -> tuple[int, int, int] | None:
        """The plot's background, for the labels' own: textual-plotext's "auto" theme paints it in the app theme's
        surface colour (plotext would give a label the canvas colour of the last build, white before the first)."""
        try:
            return Color.parse(self.app.theme_variables["surface"]).rgb
        except Exception:  # not mounted: plotext's default
            return None


def _colour(line: RefLine) -> tuple[int, int, int]:
    return {"noisy": NOISY_COLOUR, "best": BEST_COLOUR}.get(line.kind, MARK_COLOUR)
