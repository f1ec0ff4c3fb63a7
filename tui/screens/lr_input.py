"""``LrScreen``: type a new learning rate into ``#lr-input``; rejects non-numbers and values <= 0 inline."""
from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


def parse_lr(text: str) -> float:
    """The learning rate in ``text``, or ValueError saying why not."""
    try:
        lr = float(text.strip())
    except ValueError:
        raise ValueError(f"not a number: {text.strip()!r}") from None
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"must be a positive number, got {text.strip()}")
    return lr


class LrScreen(ModalScreen[float | None]):
    """Dismisses with the new learning rate, or None when cancelled with ``escape``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: float | None) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="lr-box", classes="dialog"):
            yield Label(f"Learning rate (now {self.current:.3g})" if self.current else "Learning rate")
            yield Input(f"{self.current:g}" if self.current else "", placeholder="e.g. 1e-3", id="lr-input")
            yield Label("enter: apply    esc: cancel", id="lr-message", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#lr-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            lr = parse_lr(event.value)
        except ValueError as e:
            msg = self.query_one("#lr-message", Label)
            msg.update(f"✖ {e}")
            msg.add_class("error")
            event.input.add_class("-invalid")
            return
        self.dismiss(lr)

    def action_cancel(self) -> None:
        self.dismiss(None)
