"""``EventLog``: a short log of what happened to the run (pauses, lr changes, saves, the NaN guard)."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

STATE_LOG_STYLE = {"paused": "yellow", "stopped": "red", "failed": "bold red", "finished": "cyan", "running": "green"}


def one_line(text: str) -> str:
    """A multi-line detail (a traceback) as its most telling line: the last non-empty one."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def eval_entry(psnr: float, best: float | None) -> tuple[str, str]:
    """The event log's line for an evaluation (``best``: the best PSNR so far, this one included) and its style."""
    new_best = best is None or psnr >= best
    return f"eval {psnr:.2f} dB" + (" ★ best" if new_best else f" (best {best:.2f})"), "bold" if new_best else ""


def backfill_entries(events: list[dict], evals: list[tuple[int, float]]) -> list[tuple[str, int | None, str]]:
    """The event log of a run as the store holds it: its events and its evaluations (written as the live log
    writes them), in step order; a state change comes before an evaluation at the same step, other events after."""
    entries, best = [], None
    for step, value in evals:
        best = value if best is None else max(best, value)
        entries.append(((step, 1), *eval_entry(value, best), step))
    at = -1
    for ev in events:
        detail = one_line(ev.get("detail") or "")
        step = ev.get("step")
        at = step if step is not None else at  # an event without a step stays after the one before it
        order = 0 if ev["kind"] in ("state", "restart") else 2
        entries.append(((at, order), f"{ev['kind']}" + (f" {detail}" if detail else ""), "", step))
    entries.sort(key=lambda e: e[0])  # stable: events keep their recorded order within a step
    return [(text, step, style) for _, text, style, step in entries]


class EventLog(RichLog):
    """``add_event(text, step)`` appends one entry, prefixed with the step it happened at (when known); long
    entries wrap to the widget's width. ``entries`` keeps the plain text."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=500, min_width=10, wrap=True, markup=False, **kwargs)
        self.entries: list[str] = []

    def add_event(self, text: str, step: int | None = None, style: str = "") -> None:
        line = Text(no_wrap=False, overflow="fold")
        if step is not None:
            line.append(f"{step:>5} ", "dim")
        line.append(text, style)
        self.entries.append(line.plain)
        self.write(line)

    def clear_entries(self) -> None:
        self.entries.clear()
        self.clear()
