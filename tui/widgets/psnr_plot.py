"""``PsnrPlot``: validation PSNR against step, with the best point marked."""
from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from .loss_plot import SERIES_COLOURS, int_ticks, nice_ticks

BEST_COLOUR = (255, 215, 0)


class PsnrPlot(PlotextPlot):
    """Live: ``add_point`` then ``redraw``. History: ``show_runs`` with one series per run."""

    def __init__(self, *, title: str = "validation PSNR (dB)", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self._runs: list[tuple[str, list[int], list[float]]] = [("", [], [])]
        self.yticks: tuple[list[float], list[str]] = ([], [])  # the PSNR axis's, as drawn last

    def add_point(self, step: int, psnr: float) -> None:
        if math.isfinite(psnr):
            _, steps, values = self._runs[0]
            steps.append(step)
            values.append(psnr)

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

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        title = self.title
        for i, (label, steps, values) in enumerate(self._runs):
            if not steps:
                continue
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            plt.plot(steps, values, marker="braille", color=colour, label=label or None)
            j = max(range(len(values)), key=values.__getitem__)
            plt.scatter([steps[j]], [values[j]], marker="★", color=BEST_COLOUR)
            if len(self._runs) == 1:
                title = self._fit_title(values[j], steps[j])
        plt.title(title)
        values = [v for _, _, vs in self._runs for v in vs]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if hi - lo < 1e-9:  # one point: plotext would stretch the axis over +-4 dB around it
            lo, hi = lo - 1, hi + 1
        plt.ylim(lo, hi)
        rows = self.size.height - 4  # less the title, the frame and the step labels
        self.yticks = nice_ticks(lo, hi, max(2, min(8, rows // 2 + 1)))
        plt.yticks(*self.yticks)
        plt.xticks(*int_ticks([s for _, steps, _ in self._runs for s in steps]))
        self.refresh()
