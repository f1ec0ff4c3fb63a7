"""``ConfirmScreen``: a yes/no question; ``y`` confirms, ``n`` or ``escape`` cancels. Dismisses with a bool."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel", show=False),
    ]

    def __init__(self, question: str, *, yes: str = "y: yes", no: str = "n / esc: no") -> None:
        super().__init__()
        self.question = question
        self.hint = f"{yes}    {no}"

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Label(self.question, id="confirm-question")
            yield Label(self.hint, id="confirm-hint", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
