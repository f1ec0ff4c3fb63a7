"""``HyperScreen``: the run's live hyper-parameters (what its Model declares: learning rate, weight decay, batch size,
Adam's betas, gradient clipping) with their current values and ranges, editable and checked as you type. ``enter``
applies what changed (from the next step), ``escape`` leaves everything as it was. Dismisses with ``{name: value}``
of the changed ones (or None)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


def check(spec: dict, text: str):
    """``text`` as the hyper-parameter's value, or ValueError saying why not (the same rules as the Model's). A
    setting with an ``auto`` value (threads) takes the word ``auto`` too."""
    if spec.get("auto") is not None and text.strip().lower() == "auto":
        return spec["auto"]
    kind = int if spec.get("type") == "int" else float
    try:
        v = kind(text) if kind is float else int(float(text))
        if kind is int and float(text) != v:
            raise ValueError
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}"
                         + (" or auto" if spec.get("auto") is not None else "")) from None
    low, high, open_low = spec.get("min"), spec.get("max"), spec.get("min_open")
    if v != v or (low is not None and (v <= low if open_low else v < low)) or (high is not None and v > high):
        raise ValueError(f"must be in {'(' if open_low else '['}{low:g}, {high:g}]")
    return v


def _shown(value, spec: dict | None = None) -> str:
    if spec and spec.get("auto") is not None and value == spec["auto"]:
        return "auto"
    return f"{value:g}" if isinstance(value, (int, float)) else ""


class HyperScreen(ModalScreen[dict | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, hyper: dict) -> None:
        super().__init__()
        self.hyper = hyper
        self.problems: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="hyper-box", classes="dialog"):
            yield Label("Live hyper-parameters · from the next step · enter: apply · esc: cancel", id="hyper-title")
            for name, spec in self.hyper.items():
                low, high = spec.get("min"), spec.get("max")
                rng = f"{'(' if spec.get('min_open') else '['}{low:g}, {high:g}]" if low is not None else ""
                if spec.get("auto") is not None:
                    rng = f"auto or {rng}"
                with Horizontal(classes="hyper-row"):
                    yield Label(name, classes="hyper-name")
                    yield Input(_shown(spec.get("value"), spec), id=f"hyper-{name}", compact=True,
                                classes="hyper-input")
                    yield Label(rng, classes="hyper-range", id=f"hint-{name}")
            yield Label("", id="hyper-message")

    def on_mount(self) -> None:
        first = next(iter(self.hyper), None)
        if first:
            self.query_one(f"#hyper-{first}", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        name = event.input.id.removeprefix("hyper-")
        try:
            check(self.hyper[name], event.value)
            self.problems.pop(name, None)
            event.input.remove_class("-invalid")
        except ValueError as e:
            self.problems[name] = str(e)
            event.input.add_class("-invalid")
        self._say()

    def _say(self) -> None:
        text = "; ".join(f"{k}: {v}" for k, v in self.problems.items())
        self.query_one("#hyper-message", Label).update(f"✖ {text}" if text else "")

    def changes(self) -> dict:
        out = {}
        for name, spec in self.hyper.items():
            text = self.query_one(f"#hyper-{name}", Input).value.strip()
            if text != _shown(spec.get("value"), spec):
                out[name] = check(spec, text)
        return out

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.problems:
            self._say()
            return
        self.dismiss(self.changes())

    def action_cancel(self) -> None:
        self.dismiss(None)
