"""``RunsScreen``: past and running sessions from the store; attach to a live one, open a past one's curves, filter
(engine, state, noise, sweep, words of a run's tag), sort by any column, mark any number and overlay their curves."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label

from ..widgets import RunsTable
from ..widgets.runs_table import SORT_KEYS


class RunsScreen(Screen):
    class Attach(Message):
        """Enter on a live run: the app opens its dashboard."""

        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("m", "mark", "Mark"),
        Binding("c", "compare", "Overlay"),
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("o", "sort", "Sort"),
        Binding("f5", "reload", "Reload"),
        Binding("escape,r", "back", "Back"),
    ]

    def __init__(self, store, *, current: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.current = current

    def compose(self) -> ComposeResult:
        yield Label("Runs · enter: attach (◉ live) or curves · m: mark · c: overlay marked · /: filter · o: sort",
                    id="runs-title")
        yield Input(placeholder="filter: engine:1 state:finished noise:mix sweep:ID or words of a tag",
                    id="runs-filter", compact=True)
        yield RunsTable(id="runs-table")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one(RunsTable).focus()

    def action_reload(self) -> None:
        try:
            runs = self.store.list_runs()
        except Exception as e:
            self.notify(f"could not read the sessions store: {e}", severity="error")
            runs = []
        table = self.query_one(RunsTable)
        table.show_runs(runs)
        if not runs:
            self.query_one("#runs-title", Label).update(f"No runs yet in {getattr(self.store, 'root', 'the store')}")

    def on_data_table_row_selected(self, event: RunsTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        table = self.query_one(RunsTable)
        run = table.cursor_run
        if run and table.is_live(run):
            self.post_message(self.Attach(run))
        elif run:
            self._show([run])

    def action_mark(self) -> None:
        self.query_one(RunsTable).toggle_mark()  # the table shows the marks

    def action_compare(self) -> None:
        table = self.query_one(RunsTable)
        runs = list(table.marked)
        if len(runs) == 1 and table.cursor_run and table.cursor_run not in runs:
            runs.append(table.cursor_run)
        if len(runs) < 2:
            self.notify("mark runs with m (or mark one and put the cursor on another) to overlay them",
                        severity="warning")
            return
        self._show(runs)

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(RunsTable).filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(RunsTable).focus()

    def action_sort(self) -> None:
        """The next column to sort by (a header click sorts by that column; again: the other way round)."""
        table = self.query_one(RunsTable)
        order = [None, *SORT_KEYS]
        table.sort_by(order[(order.index(table.sort_column) + 1) % len(order)])
        self.notify(f"sorted by {table.sort_column or 'start, newest first'}"
                    + (" (descending)" if table.sort_reverse else ""), timeout=2)

    def on_data_table_header_selected(self, event) -> None:
        event.stop()
        self.query_one(RunsTable).sort_by(str(event.label))

    def _show(self, refs: list[str]) -> None:
        from .run_curves import RunCurvesScreen

        try:
            runs = [self.store.get_run(r) for r in refs]
        except Exception as e:
            self.notify(f"could not load the run: {e}", severity="error")
            return
        self.app.push_screen(RunCurvesScreen(runs))

    def action_back(self) -> None:
        self.app.pop_screen()
