"""``RunsTable``: the sessions store's runs, live ones marked, filtered (``filter_runs``), sorted by any column
(``sort_by``), with any number of rows marked for an overlay of their curves."""
from __future__ import annotations

import datetime as dt
import math

from rich.text import Text
from textual.widgets import DataTable

from engine.states import LIVE  # a run in one of these states has a runner: enter attaches to it

# the tag beside the id: a note is how a person tells runs apart, and the last columns are off an 80-column screen
COLUMNS = ("", "run", "tag", "engine", "state", "step", "best PSNR", "started", "lr", "noise")
TAG_WIDTH = 24  # a longer tag is cut, with an ellipsis (runs and show print it whole; the filter reads all of it)
# column -> how its rows sort (None last); "" and "run" sort by id
SORT_KEYS = {
    "run": lambda r: r["id"], "tag": lambda r: r.get("tag") or None, "engine": lambda r: r.get("engine"),
    "state": lambda r: r.get("state"), "step": lambda r: r.get("step"), "best PSNR": lambda r: r.get("best_psnr"),
    "started": lambda r: r.get("started"), "lr": lambda r: r.get("lr"),
    "noise": lambda r: (r.get("config") or {}).get("noise"),
}


def _when(t) -> str:
    if t is None:
        return "–"
    if isinstance(t, (int, float)):
        return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
    return str(t)[:16].replace("T", " ")


def short_tag(tag: str | None, width: int = TAG_WIDTH) -> str:
    tag = tag or ""
    return tag if len(tag) <= width else tag[:width - 1] + "…"


def filter_runs(runs: list[dict], query: str) -> list[dict]:
    """Runs matching every term of ``query``: ``engine:1``, ``state:finished`` (``state:live`` for running or
    paused), ``noise:mix`` (a prefix of the noise spec), ``sweep:ID``; any other word must appear in the run's tag
    or id (case-insensitive)."""
    out = runs
    for term in query.split():
        key, sep, value = term.partition(":")
        key, value = key.lower(), value.lower()
        if sep and key == "engine":
            out = [r for r in out if str(r.get("engine")) == value]
        elif sep and key == "state":
            out = [r for r in out if (r.get("state") in LIVE if value == "live" else r.get("state") == value)]
        elif sep and key == "noise":
            out = [r for r in out if str((r.get("config") or {}).get("noise", "")).lower().startswith(value)]
        elif sep and key == "sweep":
            out = [r for r in out if str((r.get("config") or {}).get("sweep") or "").lower().startswith(value)]
        else:
            word = term.lower()
            out = [r for r in out if word in (r.get("tag") or "").lower() or word in r["id"].lower()]
    return out


class RunsTable(DataTable):
    """``show_runs(runs)`` fills it from ``Store.list_runs()``; ``filter`` narrows, ``sort_by`` orders (newest first
    by default); ``toggle_mark()`` marks the cursor row (any number)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.marked: list[str] = []
        self.query_text = ""
        self.sort_column: str | None = None  # None: newest first
        self.sort_reverse = False
        self._all: list[dict] = []
        self._runs: dict[str, dict] = {}

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show_runs(self, runs: list[dict]) -> None:
        self._all = runs
        self._fill()

    def filter(self, query: str) -> int:
        """Show the runs matching ``query`` (see ``filter_runs``); returns how many."""
        self.query_text = query
        self._fill()
        return self.row_count

    def sort_by(self, column: str | None, reverse: bool | None = None) -> None:
        """Order by ``column`` (one of COLUMNS); the same column again reverses the order."""
        if column not in SORT_KEYS:
            column = None
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else column in ("best PSNR", "started",
                                                                                              "step")
        self.sort_column, self.sort_reverse = column, reverse
        self._fill()

    def _ordered(self, runs: list[dict]) -> list[dict]:
        if self.sort_column is None:
            return list(reversed(runs))
        key = SORT_KEYS[self.sort_column]
        present = [r for r in runs if key(r) is not None and not (isinstance(key(r), float) and math.isnan(key(r)))]
        missing = [r for r in runs if r not in present]
        return sorted(present, key=key, reverse=self.sort_reverse) + missing

    def _fill(self) -> None:
        keep = self.cursor_run
        self.clear()
        shown = self._ordered(filter_runs(self._all, self.query_text))
        self._runs = {r["id"]: r for r in self._all}
        self.marked = [m for m in self.marked if m in self._runs]
        for r in shown:
            best = r.get("best_psnr")
            lr = r.get("lr")
            state = r.get("state") or "–"
            self.add_row(
                "●" if r["id"] in self.marked else " ", r["id"], short_tag(r.get("tag")), str(r.get("engine", "–")),
                Text(f"{state} ◉ live", style="bold green") if state in LIVE else state,
                str(r.get("step") or 0), f"{best:.2f} @ {r.get('best_step')}" if best is not None else "–",
                _when(r.get("started")), f"{lr:.3g}" if lr else "–",
                str((r.get("config") or {}).get("noise", "–")), key=r["id"])
        ids = [r["id"] for r in shown]
        if keep in ids:
            self.move_cursor(row=ids.index(keep))

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
        self.update_cell(run, self.columns_keys[0], "●" if run in self.marked else " ")
        return self.marked

    @property
    def columns_keys(self):
        return list(self.columns)
