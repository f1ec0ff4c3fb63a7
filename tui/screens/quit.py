"""``QuitScreen``: leaving the dashboard of a run that lives in a runner: detach (it keeps training), stop it, or stay.
Dismisses with "detach", "stop" or None."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class QuitScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("d", "answer('detach')", "Detach"),
        Binding("y", "answer('stop')", "Stop run"),
        Binding("escape,n", "answer(None)", "Cancel"),
    ]

    def __init__(self, run_id: str, detach_hint: str = "n2n-tui attach brings you back") -> None:
        super().__init__()
        self.run_id = run_id
        self.detach_hint = detach_hint

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box", classes="dialog"):
            yield Label(f"Run {self.run_id} is still training.", id="quit-question")
            yield Label(f"d  detach: it keeps training ({self.detach_hint})\n"
                        "y  stop the run and quit\n"
                        "esc  cancel", id="quit-hint", classes="hint")

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)
