"""``RunStatus``: two lines saying what the run is doing (engine, device, state, progress, lr, speed, best, ETA)."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

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


class RunStatus(Static):
    """Intent-named setters; each re-renders the two lines."""

    DEFAULT_CSS = """
    RunStatus { height: 2; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
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
        self._update()

    def show_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self._update()

    def show_step(self, step: int, epoch: int, lr: float, img_per_s: float | None, total_steps: int = 0,
                  eta: float | None = None) -> None:
        self.step, self.epoch, self.lr, self.eta = step, epoch, lr, eta
        if img_per_s is not None:
            self.img_per_s = img_per_s
        if total_steps:
            self.total_steps = total_steps
        self._update()

    def show_lr(self, lr: float) -> None:
        self.lr = lr
        self._update()

    def show_best(self, psnr: float, step: int) -> None:
        self.best = (psnr, step)
        self._update()

    def show_eta(self, seconds: float | None) -> None:
        self.eta = seconds
        self._update()

    def _update(self) -> None:
        icon, style = STATE_STYLE.get(self.state, ("?", ""))
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(self.run_id or "run –", "bold")
        t.append(f" · engine {self.engine or '–'} · {self.device or '–'} · ")
        t.append(f"{icon} {self.state}", style)
        t.append(f" · epoch {self.epoch}/{self.epochs} · step {self.step}/{self.total_steps or '?'}")
        if self.message:
            t.append(f" · {self.message}", "italic")
        t.append("\n")
        t.append(f"lr {self.lr:.3g}" if self.lr is not None else "lr –")
        t.append(f" · {self.img_per_s:,.0f} img/s" if self.img_per_s else " · – img/s")
        if self.best:
            t.append(" · best ")
            t.append(f"{self.best[0]:.2f} dB", "bold")
            t.append(f" @ step {self.best[1]}")
        else:
            t.append(" · best –")
        t.append(f" · ETA {format_eta(self.eta if self.state == 'running' else None)}")
        self.update(t, layout=False)  # fixed size: no layout pass at every step
