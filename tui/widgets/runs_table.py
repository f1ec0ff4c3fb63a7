"""``RunsTable``: the sessions store's runs, newest first, live ones marked, with up to two rows marked for
comparison."""
from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.widgets import DataTable

LIVE = ("running", "paused")  # a run in one of these states has a runner: enter attaches to it

COLUMNS = ("", "run", "engine", "state", "step", "best PSNR", "started", "lr")


def _when(t) -> str:
    if t is None:
        return "–"
    if isinstance(t, (int, float)):
        return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
    return str(t)[:16].replace("T", " ")


class RunsTable(DataTable):
    """``show_runs(runs)`` fills it from ``Store.list_runs()``, newest first; ``toggle_mark()`` marks the cursor row."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.marked: list[str] = []
        self._runs: dict[str, dict] = {}

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show_runs(self, runs: list[dict]) -> None:
        self.clear()
        self._runs = {r["id"]: r for r in runs}
        self.marked = [m for m in self.marked if m in self._runs]
        for r in reversed(runs):
            best = r.get("best_psnr")
            lr = r.get("lr")
            state = r.get("state") or "–"
            self.add_row(
                "●" if r["id"] in self.marked else " ", r["id"], str(r.get("engine", "–")),
                Text(f"{state} ◉ live", style="bold green") if state in LIVE else state,
                str(r.get("step") or 0), f"{best:.2f} @ {r.get('best_step')}" if best is not None else "–",
                _when(r.get("started")), f"{lr:.3g}" if lr else "–", key=r["id"])

    def is_live(self, run_id: str | None) -> bool:
        return run_id in self._runs and self._runs[run_id].get("state") in LIVE

    @property
    def cursor_run(self) -> str | None:
        if not self.row_count:
            return None
        key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return key.value

    def toggle_mark(self) -> list[str]:
        run = self.cursor_run
        if run is None:
            return self.marked
        if run in self.marked:
            self.marked.remove(run)
        else:
            self.marked.append(run)
            if len(self.marked) > 2:
                self.marked.pop(0)
        for rid in self._runs:
            self.update_cell(rid, self.columns_keys[0], "●" if rid in self.marked else " ")
        return self.marked

    @property
    def columns_keys(self):
        return list(self.columns)
