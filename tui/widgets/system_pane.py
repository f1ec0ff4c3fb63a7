"""``SystemPane``: one line on what the machine does while the run trains: host CPU, torch's threads (and the cores
other processes keep busy, when they slow the run down), the run's memory (with its trend), the GPU, free disk where
the run writes. Fed with ``SystemEvent``s (``show_sample``), live or from the store."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

BARS = "▁▂▃▄▅▆▇█"
TREND = 6  # samples in the memory trend (half a minute at one every 5 s)


def _bytes(v: float | None) -> str:
    """Compact: 812M, 51G (decimal units)."""
    if v is None:
        return "–"
    for unit in ("B", "k", "M", "G", "T"):
        if v < 1000 or unit == "T":
            return f"{v:.0f}{unit}" if v >= 10 or unit == "B" else f"{v:.1f}{unit}"
        v /= 1000
    return "–"


def trend(values: list[float]) -> str:
    """A sparkline of ``values`` (min to max of the window)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / span * (len(BARS) - 1) + 0.5))] for v in vals)


class SystemPane(Static):
    DEFAULT_CSS = """
    SystemPane { height: 1; width: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("cpu – rss – gpu – disk –", **kwargs)
        self.last = None
        self.line = Text("")
        self._rss: list[float] = []

    def show_sample(self, sample) -> None:
        """A ``SystemEvent``."""
        self.last = sample
        if sample.rss is not None:
            self._rss = (self._rss + [sample.rss])[-TREND:]
        line = Text()
        line.append("cpu ", "dim")
        line.append(f"{sample.cpu:.0f}%" if sample.cpu is not None else "–")
        threads, busy = sample.threads, sample.busy
        if threads is not None:
            line.append(f" {threads} thr", "dim")
        if busy is not None and busy >= 0.5:  # someone else's work competes for the cores: say so
            cores = max(1, round(busy))
            line.append(f" · {cores} core{'s' if cores != 1 else ''} busy elsewhere", "yellow")
        line.append(" rss ", "dim")
        line.append(_bytes(sample.rss))
        if len(self._rss) > 1:
            line.append(trend(self._rss), "cyan")
        line.append(" gpu ", "dim")
        if sample.gpu_mem is None and sample.gpu_util is None:
            line.append("–")
        else:
            util = f"{sample.gpu_util:.0f}% " if sample.gpu_util is not None else ""
            line.append(f"{util}{_bytes(sample.gpu_mem)}")
        line.append(" disk ", "dim")
        line.append(f"{_bytes(sample.disk_free)} free")
        self.line = line
        self.update(line)
