"""``TrialsTable``: a sweep's trials, best PSNR first, with their runs' tags, parameters, progress and an
early-stopped mark."""
from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import DataTable

from .runs_table import short_tag

COLUMNS = ("trial", "tag", "state", "params", "step", "last PSNR", "best PSNR", "")
STATE_STYLE = {"running": "bold green", "finished": "cyan", "stopped": "yellow", "failed": "bold red",
               "pending": "dim"}


def _psnr(v) -> str:
    return f"{v:.2f}" if v is not None else "–"


class TrialsTable(DataTable):
    """``show_trials(trials)`` with ``TrialView``-like dicts (and the ``tag`` of each trial's run, when it has
    one); the leader's row is starred."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.order: list[str] = []

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show_trials(self, trials: list[dict]) -> None:
        ranked = sorted(trials, key=lambda t: -(t["best_psnr"] if t["best_psnr"] is not None else float("-inf")))
        keep = self.cursor_trial
        self.clear()
        self.order = [t["trial"] for t in ranked]
        for i, t in enumerate(ranked):
            params = ", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())
            mark = "★ leader" if i == 0 and t["best_psnr"] is not None else ""
            if t.get("early_stopped"):
                mark = (mark + " " if mark else "") + "✂ early-stopped"
            step = f"{t['step']}/{t['total_steps']}" if t["total_steps"] else str(t["step"])
            self.add_row(t["trial"], short_tag(t.get("tag")), Text(t["state"], style=STATE_STYLE.get(t["state"], "")),
                         params, step,
                         _psnr(t["psnr"]), _psnr(t["best_psnr"]), mark, key=t["trial"])
        if keep in self.order:
            self.move_cursor(row=self.order.index(keep))

    @property
    def cursor_trial(self) -> str | None:
        if not self.row_count:
            return None
        key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return key.value


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)
