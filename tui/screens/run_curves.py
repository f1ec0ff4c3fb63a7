"""``RunCurvesScreen``: the loss and PSNR curves of one stored run, or of two runs on the same plots."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label

from ..widgets import EventLog, LossPlot, PsnrPlot


def series(run: dict, key: str) -> tuple[list[int], list[float]]:
    points = [m for m in run.get("metrics", []) if m.get(key) is not None]
    return [m["step"] for m in points], [m[key] for m in points]


def summary(run: dict) -> str:
    cfg = run.get("config") or {}
    best, step = run.get("best_psnr"), run.get("best_step")
    if best is None:  # not summarised by the store: find it in the series
        psnr = [(v, s) for s, v in zip(*series(run, "psnr"))]
        best, step = max(psnr) if psnr else (None, None)
    best = f"{best:.2f} dB @ {step}" if best is not None else "–"
    return (f"{run['id']}: engine {cfg.get('engine', '–')} · {cfg.get('data', '–')} · {cfg.get('noise', '–')} "
            f"· {run.get('state', '–')} · best {best}")


class RunCurvesScreen(Screen):
    BINDINGS = [Binding("escape,q", "back", "Back")]

    def __init__(self, runs: list[dict]) -> None:
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        lines = [summary(r) for r in self.runs]
        if len(lines) > 6:  # many overlaid: the legend names them; say how many
            lines = lines[:5] + [f"… and {len(lines) - 5} more runs (legend on the plots)"]
        yield Label("\n".join(lines), id="curves-title")
        with Horizontal(id="curves-main"):
            with Vertical(id="curves-plots"):
                yield LossPlot(id="loss-plot", title="loss (log scale)")
                yield PsnrPlot(id="psnr-plot")
            if len(self.runs) == 1:
                yield EventLog(id="events")
        yield Footer()

    def on_mount(self) -> None:
        label = (lambda r: r.get("tag") or r["id"]) if len(self.runs) > 1 else (lambda r: "")
        self.query_one(LossPlot).show_runs([(label(r), *series(r, "loss")) for r in self.runs])
        psnr = self.query_one(PsnrPlot)
        noisy = {round(r["psnr_noisy"], 2) for r in self.runs if r.get("psnr_noisy") is not None}
        if len(noisy) == 1:  # the same validation images: one baseline for all of them
            psnr.show_noisy(noisy.pop())
        psnr.show_runs([(label(r), *series(r, "psnr")) for r in self.runs])
        if len(self.runs) == 1:
            log = self.query_one(EventLog)
            for ev in self.runs[0].get("events", []):
                detail = (ev.get("detail") or "").strip().splitlines()
                log.add_event(f"{ev.get('kind')}" + (f" {detail[-1]}" if detail else ""), ev.get("step"))

    def action_back(self) -> None:
        self.app.pop_screen()
