"""``LossPlot``: training loss on a log scale, raw points underneath an exponentially smoothed line."""
from __future__ import annotations

import math
import time

from textual_plotext import PlotextPlot

RAW_COLOUR = (110, 110, 130)
LR_COLOUR = (200, 140, 60)  # the learning rate, on the right-hand axis
BEST_COLOUR = (255, 215, 0)  # the best evaluation: the PSNR plot's star and lines, the loss plot's dotted line
SERIES_COLOURS = [(90, 170, 255), (255, 160, 60), (120, 220, 120), (230, 110, 200), (240, 230, 90), (100, 220, 220),
                  (250, 110, 110), (180, 150, 255)]


class Ema:
    """Exponential moving average, bias-corrected so the first points are not dragged to zero; incremental."""

    def __init__(self, alpha: float) -> None:
        self.alpha, self.m, self.n, self.values = alpha, 0.0, 0, []

    def extend(self, values) -> "Ema":
        a = self.alpha
        for v in values:
            self.m = (1 - a) * self.m + a * v
            self.n += 1
            self.values.append(self.m / (1 - (1 - a) ** self.n))
        return self


def thin(xs: list, ys: list, n: int) -> tuple[list, list]:
    """At most ``n`` evenly strided points (the last one always kept), so drawing cost stays bounded."""
    if len(xs) <= n:
        return xs, ys
    stride = math.ceil(len(xs) / n)
    idx = list(range(0, len(xs), stride))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


def nice_ticks(lo: float, hi: float, n: int) -> tuple[list[float], list[str]]:
    """At most ``n`` (and at least two) ticks at the multiples of a round step (1, 2 or 5 x 10^k) inside
    ``[lo, hi]``, labelled with as many decimals as the step needs: 21, 21.5, 22 rather than 21.07, 21.40, 21.73."""
    if not hi > lo:
        return [lo], [f"{lo:.3g}"]
    n = max(2, n)
    steps = _round_steps((hi - lo) / n)
    step = next(steps)
    ticks = _multiples(lo, hi, step)
    while len(ticks) > n:
        coarser = _multiples(lo, hi, bigger := next(steps))
        if len(coarser) < 2:
            break
        step, ticks = bigger, coarser
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    return ticks, [f"{t:.{digits}f}" for t in ticks]


def _round_steps(start: float):
    """1, 2, 5 x 10^k, from the power of ten at or below ``start`` upwards."""
    e = math.floor(math.log10(start))
    while True:
        yield from (m * 10.0 ** e for m in (1, 2, 5))
        e += 1


def _multiples(lo: float, hi: float, step: float) -> list[float]:
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) + 1
    return [round(i * step, digits) for i in range(first, last + 1)]


def row_ticks(lo: float, hi: float, rows: int, max_growth: float = 1.5) -> tuple[float, float, list, list[str]]:
    """Y-limits around ``[lo, hi]`` for a plot ``rows`` high that put round ticks exactly on rows, evenly spaced.

    plotext maps a value to the nearest row, so round ticks between limits that ignore the rows come out 1, 2, 1, 2
    rows apart. Here each row stands for ``step / k`` (a round step, k rows between ticks): of the scales that fit
    the range, the finest ones (within ``ROW_SLACK``) are kept, and of those the finest with 3 to 7 ticks taken.
    When every such scale would stretch the range more than ``max_growth`` times (a plot a few rows high), the
    limits stay ``lo, hi`` and the ticks land on the nearest rows. Returns ``(lo, hi, ticks, labels)``."""
    span = hi - lo
    if rows >= 5 and span > 0:
        need = span / (rows - 1)  # the least value per row that fits the range
        fits = []
        for step in _round_steps(2 * need):
            if step / ((rows - 1) // 2) > max_growth * need:
                break
            for k in range(2, (rows - 1) // 2 + 1):  # at least two rows between ticks, and two ticks
                r = step / k
                bottom = math.floor(lo / r + 1e-9) * r
                spare = math.floor((bottom + (rows - 1) * r - hi) / r + 1e-9)
                if need - 1e-12 <= r <= max_growth * need and spare >= 0:
                    bottom -= (spare // 2) * r  # the spare rows shared out above and below
                    n = len(_multiples(bottom, bottom + (rows - 1) * r, step))
                    fits.append((max(0, 3 - n, n - 7), r, -k, step, bottom))
        if fits:
            finest = min(f[1] for f in fits)
            _, r, _, step, bottom = min(f for f in fits if f[1] <= ROW_SLACK * finest)
            ticks = _multiples(bottom, bottom + (rows - 1) * r, step)
            digits = max(0, -math.floor(math.log10(step) + 1e-9))
            return bottom, bottom + (rows - 1) * r, ticks, [f"{t:.{digits}f}" for t in ticks]
    return (lo, hi, *nice_ticks(lo, hi, max(2, min(8, rows // 2 + 1))))


ROW_SLACK = 1.25  # row_ticks: how much coarser than the finest fitting scale a scale with better-spaced ticks may be


LOG_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8))


def log_ticks(values: list[float], n: int) -> tuple[list[float], list[str]]:
    """At most ``n`` ticks spanning log10 ``values`` at round losses (decades, then 1-2-5, then finer), labelled with
    the loss they stand for; for a range narrower than that (a flat loss), round losses on a linear ladder."""
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        return [lo], [f"{10 ** lo:.2g}"]
    n = max(2, n)
    min_gap = (hi - lo) / (2 * n)  # labels further apart than about one row
    chosen: list[float] = []
    for mantissas in LOG_MANTISSAS:
        ticks = [t for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in mantissas
                 if lo - 1e-9 <= (t := k + math.log10(m)) <= hi + 1e-9]
        if mantissas == (1,) and len(ticks) > n:  # many decades: every second (third...) one
            ticks = ticks[::math.ceil(len(ticks) / n)]
        if len(ticks) > n or any(b - a < min_gap for a, b in zip(ticks, ticks[1:])):
            break
        chosen = ticks
        if len(ticks) >= min(3, n):
            break
    if len(chosen) < 2:
        linear, labels = nice_ticks(10 ** lo, 10 ** hi, n)
        return [math.log10(v) for v in linear], labels
    return chosen, [f"{10 ** t:.3g}" for t in chosen]


def int_ticks(xs: list[int], n: int = 6) -> tuple[list[int], list[str]]:
    """At most ``n`` whole-number ticks at round steps inside ``xs``'s range (plotext would label 149.5)."""
    if not xs:
        return [], []
    lo, hi = min(xs), max(xs)
    if hi - lo < n:
        ticks = list(range(lo, hi + 1))
    else:
        ticks = [int(t) for t in nice_ticks(lo, hi, n)[0]]
    return ticks, [f"{t / 1000:g}k" if t >= 10000 else str(t) for t in ticks]


class LossPlot(PlotextPlot):
    """Loss against step. Live: ``add_points`` then ``redraw``. History: ``show_runs`` with one series per run.

    The log scale is ours: log10 of the losses on a linear axis, with ticks labelled by the loss. plotext's own log
    scale transforms its stored data in place on every build, so any second build (a resize) took the log twice.
    The live run's learning rate (``add_lr_points``) is drawn on a second, right-hand log axis, so a schedule shows.
    The step of the best evaluation so far (``show_best_step``) is a dotted vertical line, named in the title: what
    the loss was doing when the weights worth keeping were saved.
    """

    def __init__(self, *, smoothing: float = 0.05, title: str = "loss (log scale)", **kwargs) -> None:
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self.title = title
        self._runs: list[tuple[str, list[int], list[float]]] = [("", [], [])]
        self._smooth: list[Ema] = [Ema(smoothing)]
        self._lr: tuple[list[int], list[float]] = ([], [])
        self.best_step: int | None = None
        self.yticks: tuple[list[float], list[str]] = ([], [])  # the loss axis's, as drawn last
        self.render_seconds = 0.0  # what the last draw cost: the dashboard spaces redraws by it

    def add_points(self, points: list[tuple[int, float]]) -> None:
        """Append ``(step, loss)`` points to the live series; non-finite or non-positive losses are skipped."""
        _, steps, losses = self._runs[0]
        n = len(losses)
        for step, loss in points:
            if math.isfinite(loss) and loss > 0:
                steps.append(step)
                losses.append(loss)
        self._smooth[0].extend(losses[n:])

    def add_lr_points(self, points: list[tuple[int, float]]) -> None:
        """Append ``(step, learning rate)`` points of the live run (drawn on the right-hand axis)."""
        steps, rates = self._lr
        for step, lr in points:
            if lr is not None and math.isfinite(lr) and lr > 0:
                steps.append(step)
                rates.append(lr)

    def show_best_step(self, step: int | None) -> None:
        """Mark the step of the live run's best evaluation (drawn at the next ``redraw``)."""
        self.best_step = step

    def clear_points(self) -> None:
        """Empty the live series (before it is filled again from the store)."""
        self._runs = [("", [], [])]
        self._smooth = [Ema(self.smoothing)]
        self._lr = ([], [])

    def show_runs(self, runs: list[tuple[str, list[int], list[float]]]) -> None:
        """Replace everything with one labelled series per run (past runs, comparisons)."""
        self._runs = [(label, *self._clean(steps, losses)) for label, steps, losses in runs] or [("", [], [])]
        self._smooth = [Ema(self.smoothing).extend(losses) for _, _, losses in self._runs]
        self.redraw()

    @property
    def n_points(self) -> int:
        return sum(len(s) for _, s, _ in self._runs)

    @staticmethod
    def _clean(steps, losses):
        keep = [(s, v) for s, v in zip(steps, losses) if v is not None and math.isfinite(v) and v > 0]
        return [s for s, _ in keep], [v for _, v in keep]

    @property
    def best_shown(self) -> bool:
        """Whether the best evaluation's step is drawn: a single run, the step within its steps."""
        steps = self._runs[0][1]
        return len(self._runs) == 1 and self.best_step is not None and bool(steps) and \
            steps[0] <= self.best_step <= steps[-1]

    def _fit_title(self, lr_shown: bool) -> str:
        """The longest title that fits (plotext silently drops a title wider than the plot)."""
        room = self.size.width - 10
        best = f" · ┊ best PSNR @ step {self.best_step}" if self.best_shown else ""
        short_best = f" · ┊ best @ {self.best_step}" if self.best_shown else ""
        lr = " · lr: right axis" if lr_shown else ""
        for title in (self.title + lr + best, self.title + best, self.title + short_best, "loss" + short_best):
            if len(title) <= room:
                return title
        return self.title if len(self.title) <= room else ""

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        lr_shown = len(self._runs) == 1 and bool(self._lr[0]) and self.size.width >= 40
        plt.title(self._fit_title(lr_shown))
        budget = max(20, 2 * self.size.width)
        shown = []
        for i, (label, steps, losses) in enumerate(self._runs):
            if not steps:
                continue
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            smooth = [math.log10(v) for v in self._smooth[i].values]
            if len(self._runs) == 1:  # raw points only for a single run: two clouds would hide each other
                xs, ys = thin(steps, losses, budget)
                ys = [math.log10(v) for v in ys]
                if self.best_shown:  # first, so the points and the curve are drawn over it
                    plt.plot([self.best_step] * 2, [min(ys + smooth), max(ys + smooth)], marker="┊",
                             color=BEST_COLOUR)
                plt.scatter(xs, ys, marker="dot", color=RAW_COLOUR)
                shown += ys
            xs, ys = thin(steps, smooth, budget)
            plt.plot(xs, ys, marker="braille", color=colour, label=label or None)
            shown += ys
        rows = self.size.height - 4  # less the title, the frame and the step labels
        self.yticks = log_ticks(shown, max(2, min(6, rows // 2))) if shown and rows >= 2 else ([], [])
        plt.yticks(*self.yticks)  # none when too flat to place them: plotext would put them upside down
        lr_steps, rates = self._lr
        if lr_shown and rows >= 2:
            xs, ys = thin(lr_steps, [math.log10(v) for v in rates], budget)
            plt.plot(xs, ys, marker="braille", color=LR_COLOUR, yside="right")
            plt.yticks(*log_ticks(ys, 2 if max(ys) - min(ys) > 1e-9 else 1), yside="right")
        plt.xticks(*int_ticks([s for _, steps, _ in self._runs for s in steps]))
        self.refresh()

    def on_resize(self) -> None:
        self.redraw()  # ticks and thinning follow the new size

    def render(self):
        t = time.perf_counter()
        result = super().render()
        self.render_seconds = time.perf_counter() - t
        return result
