"""``RunStatus``: two lines saying what the run is doing (engine, device, state, progress, lr, speed, best, ETA)."""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

STATE_STYLE = {
    "idle": ("○", "dim"), "loading": ("…", "yellow"), "running": ("▶", "bold green"),
    "paused": ("⏸", "bold yellow"),
    "stopping": ("…", "yellow"), "stopped": ("■", "bold red"), "finished": ("✔", "bold cyan"),
    "failed": ("✖", "bold red"),
}


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# Fields dropped at narrow widths, first to last, so that each line stays one line. Line 1: the device and the engine
# do not change during a run and the user chose them; the epoch is implied by the step; the run id names a run the user
# already knows (it is in the terminal's title and the event log) and gives way to a message saying why a run stopped
# or failed. The state and the step are never dropped. Line 2: the speed first (the ETA says what it means), then the
# step of the best, then the learning rate; the best PSNR and the ETA stay: where the run stands and how long is left.
LINE1_DROPS = ("device", "engine", "epoch", "run")
LINE2_DROPS = ("speed", "best_step", "lr")
MESSAGE_ROOM = 30  # the columns a state's message keeps before the fields above give way to it


def fit(parts: list[tuple], drops: tuple[str, ...], width: int, reserve: int = 0) -> Text:
    """``parts`` (``(name, text)`` or ``(name, text, shorter text)``, joined with " · ") on one line of ``width``
    columns, leaving ``reserve`` more: the named parts in ``drops``, first to last, give way to their shorter text
    or go, until it fits. ``lines`` cuts what still does not with an ellipsis."""
    parts = [(p[0], p[1], p[2] if len(p) > 2 else None) for p in parts]
    for name in drops:
        if _joined(parts).cell_len + reserve <= width:
            break
        parts = [(n, short, None) if n == name else (n, t, short) for n, t, short in parts
                 if n != name or short is not None]
    return _joined(parts)


def _joined(parts: list[tuple[str, Text]]) -> Text:
    return Text(" · ").join(text for _, text, _ in parts)


class RunStatus(Widget):
    """Intent-named setters; each re-renders the two lines, which are fitted to the width (never wrapped)."""

    DEFAULT_CSS = """
    RunStatus { height: 2; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_id = ""
        self.engine: int | None = None
        self.device = ""
        self.state = "idle"
        self.message = ""
        self.epoch = 0
        self.epochs = 0
        self.step = 0
        self.total_steps = 0
        self.lr: float | None = None
        self.img_per_s: float | None = None
        self.best: tuple[float, int] | None = None
        self.eta: float | None = None

    def show_run(self, run_id: str, engine: int, device: str, epochs: int, total_steps: int = 0) -> None:
        self.run_id, self.engine, self.device = run_id, engine, device
        self.epochs, self.total_steps = epochs, total_steps
        self.refresh()

    def show_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.refresh()

    def show_step(self, step: int, epoch: int, lr: float, img_per_s: float | None, total_steps: int = 0,
                  eta: float | None = None) -> None:
        self.step, self.epoch, self.lr, self.eta = step, epoch, lr, eta
        if img_per_s is not None:
            self.img_per_s = img_per_s
        if total_steps:
            self.total_steps = total_steps
        self.refresh()

    def show_lr(self, lr: float) -> None:
        self.lr = lr
        self.refresh()

    def show_best(self, psnr: float, step: int) -> None:
        self.best = (psnr, step)
        self.refresh()

    def show_eta(self, seconds: float | None) -> None:
        self.eta = seconds
        self.refresh()

    def lines(self, width: int) -> tuple[Text, Text]:
        """The two lines, each fitted to ``width`` columns."""
        icon, style = STATE_STYLE.get(self.state, ("?", ""))
        message = " ".join(self.message.split())  # a traceback's line breaks would break the line
        first = fit([("run", Text(self.run_id or "run –", "bold")), ("engine", Text(f"engine {self.engine or '–'}")),
                     ("device", Text(self.device or "–")), ("state", Text(f"{icon} {self.state}", style)),
                     ("epoch", Text(f"epoch {self.epoch}/{self.epochs}")),
                     ("step", Text(f"step {self.step}/{self.total_steps or '?'}"))],
                    LINE1_DROPS, width, 3 + min(len(message), MESSAGE_ROOM) if message else 0)
        if message:
            first.append(" · ")
            first.append(message, "italic")
        best = short = Text("best –")
        if self.best:
            short = Text.assemble("best ", (f"{self.best[0]:.2f} dB", "bold"))
            best = short + Text(f" @ step {self.best[1]}")
        second = fit([("lr", Text(f"lr {self.lr:.3g}" if self.lr is not None else "lr –")),
                      ("speed", Text(f"{self.img_per_s:,.0f} img/s" if self.img_per_s else "– img/s")),
                      ("best_step", best, short),
                      ("eta", Text(f"ETA {format_eta(self.eta if self.state == 'running' else None)}"))],
                     LINE2_DROPS, width)
        for line in (first, second):
            line.truncate(width, overflow="ellipsis")
        return first, second

    def render(self) -> Text:
        first, second = self.lines(self.size.width)
        return Text("\n").join([first, second])
