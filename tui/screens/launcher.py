"""``LauncherScreen``: pick engine, data, noise and hyper-parameters, with defaults filled in and checked as you type.

Validation is ``RunConfig.validate()`` (its "field: why" messages are shown next to the form) plus a check that a
``course:`` or ``images:`` folder exists. ``enter`` in any field (or the Start button) posts ``Start`` upwards with
the same argument namespace ``n2n-tui train`` would build.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Select

from engine.specs import FAMILIES, DataError, check_source, default_spec, parse_sources

FIELDS = ("engine", "data", "noise", "epochs", "batch_size", "lr", "schedule", "warmup", "subset", "eval_every", "seed",
          "threads")
# fixed noise levels offered beside each family's random strength (any NAME:LEVEL works from the command line)
FIXED_LEVELS = {"gaussian": (15, 25, 50), "poisson": (10, 30), "impulse": (0.1, 0.25), "pixelate": (2, 4),
                "blocky": (0.1,)}


def noise_choices(current: str) -> list[str]:
    """Every family (a random strength per image), each followed by its fixed levels; ``current`` included."""
    out = []
    for name in FAMILIES:
        out += [name] + [f"{name}:{level:g}" for level in FIXED_LEVELS.get(name, ())]
    return out if current in out else out + [current]


def noise_hint(spec: str) -> str:
    name, _, level = spec.partition(":")
    family = FAMILIES[name]
    return f"{family.help.split(',')[0]}, {family.unit} {level} for every image" if level else family.help


def train_defaults(runs_dir: str | None = None) -> argparse.Namespace:
    """The namespace ``n2n-tui train`` builds with no options (so the launcher and the CLI share defaults)."""
    from tui.parser import build_parser, threads_setting

    ns = build_parser().parse_args((["--runs-dir", runs_dir] if runs_dir else []) + ["train"])
    ns.threads = threads_setting(ns)  # what the form shows: auto, or $N2N_THREADS
    return ns


def data_problem(spec: str) -> str | None:
    """Why a source of ``spec`` (alone or in a mixture) cannot be used, or None (syntax is RunConfig's job): a
    ``course:``/``images:`` folder in the form's own words, any other source as ``check_source`` says."""
    try:
        sources = parse_sources(spec)
    except DataError:
        return None
    for kind, arg, _ in sources:
        if kind == "course":
            missing = [f for f in ("train_data.pkl", "val_data.pkl") if not (Path(arg) / f).is_file()]
            if missing:
                return f"{arg}: no {' or '.join(missing)} there"
        if kind == "images" and not Path(arg).is_dir():
            return f"{arg}: no such folder"
    try:
        check_source(spec)
    except DataError as e:
        return str(e)
    return None


class LauncherScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start run"),
        Binding("ctrl+r", "runs", "Past runs"),
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
    ]

    class Start(Message):
        """The user asked to start a run with these (validated) arguments."""

        def __init__(self, args: argparse.Namespace) -> None:
            super().__init__()
            self.args = args

    def __init__(self, defaults: argparse.Namespace, store=None) -> None:
        super().__init__()
        self.defaults = defaults
        self.store = store
        self.config = None
        self.busy = False

    def compose(self) -> ComposeResult:
        from engine.schedule import SCHEDULES

        d = self.defaults
        detected = default_spec()

        def row(label: str, widget, hint: str = ""):
            with Horizontal(classes="field", id=f"row-{widget.id}"):
                yield Label(label, classes="field-label")
                yield widget
                yield Label(hint, classes="field-hint", id=f"hint-{widget.id}")

        with Vertical(id="launcher"):
            yield Label("n2n-tui · new Noise2Noise training run", id="launcher-title")
            yield from row("engine", Select([("1 · Miniproject_1, PyTorch", 1), ("2 · Miniproject_2, from scratch", 2)],
                                            value=d.engine, allow_blank=False, compact=True, id="engine"))
            yield from row("data", Input(d.data or detected, compact=True, id="data"),
                           "found ./data" if detected.startswith("course") else "or leaves, sample+leaves")
            yield from row("noise", Select([(n, n) for n in noise_choices(d.noise)], value=d.noise,
                                           allow_blank=False, compact=True, id="noise"), noise_hint(d.noise))
            yield from row("epochs", Input(str(d.epochs), type="integer", compact=True, id="epochs"))
            yield from row("batch size", Input(str(d.batch_size or ""), type="integer", placeholder="model default",
                                               compact=True, id="batch_size"))
            yield from row("learning rate", Input(f"{d.lr:g}" if d.lr else "", placeholder="model default",
                                                  compact=True, id="lr"))
            yield from row("lr schedule", Select([(k, k) for k in SCHEDULES], value=d.schedule, allow_blank=False,
                                                 compact=True, id="schedule"), "decay of the rate over the run")
            yield from row("warm-up steps", Input(str(d.warmup), type="integer", compact=True, id="warmup"))
            yield from row("subset", Input(str(d.subset or ""), type="integer", placeholder="all pairs",
                                           compact=True, id="subset"))
            yield from row("evaluate every", Input(str(d.eval_every), compact=True, id="eval_every"),
                           "steps; auto: ~20 per run, one a minute at least")
            yield from row("seed", Input(str(d.seed), type="integer", compact=True, id="seed"))
            yield from row("CPU threads", Input(str(d.threads or "auto"), compact=True, id="threads"),
                           "auto: adapts to the load")
            yield Label("", id="launcher-error")
            with Horizontal(id="launcher-buttons"):
                yield Button("Start run", variant="primary", id="start")
                yield Label("enter: start · tab: next field", classes="hint", id="launcher-help")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#engine", Select).focus()
        self.validate()

    # ------------------------------------------------------------------------------------------------- values
    def _text(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value.strip()

    def read_config(self):
        """A RunConfig from the form (not yet validated); ValueError names the field on unparsable text."""
        from engine.config import ConfigError, RunConfig

        def integer(field, optional=False):
            t = self._text(field)
            if not t and optional:
                return None
            try:
                return int(t)
            except ValueError:
                raise ConfigError(f"{field}: expected a whole number, got {t!r}") from None

        def eval_every(text):
            return "auto" if text.lower() in ("", "auto") else integer("eval_every")

        lr_text = self._text("lr")
        try:
            lr = float(lr_text) if lr_text else None
        except ValueError:
            raise ConfigError(f"lr: not a number: {lr_text!r}") from None
        return RunConfig(engine=self.query_one("#engine", Select).value, data=self._text("data"),
                         noise=self.query_one("#noise", Select).value, epochs=integer("epochs"),
                         batch_size=integer("batch_size", True), lr=lr, subset=integer("subset", True),
                         n_val=self.defaults.n_val, eval_every=eval_every(self._text("eval_every")),
                         seed=integer("seed"),
                         device=self.defaults.device, schedule=self.query_one("#schedule", Select).value,
                         warmup=integer("warmup"), decay_to=self.defaults.decay_to,
                         step_every=self.defaults.step_every, gamma=self.defaults.gamma,
                         threads=self._text("threads").lower() or "auto")

    def validate(self) -> str | None:
        """Check the form; show the first problem inline and mark its field. Returns the problem or None."""
        from engine.config import ConfigError

        for f in FIELDS:
            self.query_one(f"#{f}").remove_class("-invalid")
        problem, field = None, None
        try:
            cfg = self.read_config().validate()
            why = data_problem(cfg.data)
            if why:
                raise ConfigError(f"data: {why}")
            self.config = cfg
        except ConfigError as e:
            problem = str(e)
            field = problem.split(":", 1)[0]
            self.config = None
        if field in FIELDS:
            self.query_one(f"#{field}").add_class("-invalid")
        err = self.query_one("#launcher-error", Label)
        err.update(f"✖ {problem}" if problem else "")
        err.set_class(bool(problem), "error")
        self.query_one("#start", Button).disabled = bool(problem) or self.busy
        return problem

    def on_input_changed(self, event: Input.Changed) -> None:
        self.validate()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "noise" and isinstance(event.value, str):
            self.query_one("#hint-noise", Label).update(noise_hint(event.value))
        self.validate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    # ------------------------------------------------------------------------------------------------- actions
    def action_start(self) -> None:
        if self.busy or self.validate():
            return
        cfg = self.config
        args = argparse.Namespace(**vars(self.defaults))
        for f in FIELDS:
            setattr(args, f, getattr(cfg, f))
        self.show_busy(f"loading {cfg.data} and building engine {cfg.engine}…")
        self.post_message(self.Start(args))

    def show_busy(self, text: str) -> None:
        self.busy = True
        self.query_one("#start", Button).disabled = True
        err = self.query_one("#launcher-error", Label)
        err.remove_class("error")
        err.update(text)

    def show_error(self, text: str) -> None:
        """The run could not be started (e.g. the data failed to load): say why and let the user fix it."""
        self.busy = False
        err = self.query_one("#launcher-error", Label)
        err.add_class("error")
        err.update(f"✖ {text}")
        self.query_one("#start", Button).disabled = False

    def action_runs(self) -> None:
        if self.store is None:
            self.notify("no sessions store", severity="warning")
            return
        from .runs import RunsScreen

        self.app.push_screen(RunsScreen(self.store))
