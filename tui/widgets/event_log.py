"""``EventLog``: a short log of what happened to the run (pauses, lr changes, saves, the NaN guard)."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog


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
