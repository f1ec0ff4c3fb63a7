"""The runs screen (ctrl+r): any number of stored runs filtered by field or text, sorted by a column, marked and
overlaid in one pair of plots."""
from __future__ import annotations

import asyncio

from engine.config import RunConfig


def many_runs(tmp_path):
    from engine.events import EvalEvent, SavedEvent, StateEvent, StepEvent
    from sessions import Recorder, Store

    store = Store(tmp_path / "runs")
    ids = []
    rows = [(1, "mix", "finished", "baseline"), (2, "gaussian:25", "finished", "wide net"),
            (1, "poisson", "stopped", ""), (2, "mix", "finished", "baseline again"), (1, "mix", "failed", "")]
    for i, (engine, noise, state, tag) in enumerate(rows):
        run = store.new_run(RunConfig(engine=engine, noise=noise))
        rec = Recorder(store, run)
        rec(StateEvent(run, "running"))
        for s in range(1, 31):
            rec(StepEvent(run, s, 1, 0.1 / (s + i), 1e-3, 100.0, 30))
            if s % 10 == 0:
                rec(EvalEvent(run, s, 1, 20 + i + s / 10, 20 + i + s / 10))
                rec(SavedEvent(run, "best.pth", 20 + i + s / 10, s, "best"))
        rec(StateEvent(run, state))
        if tag:
            store.set_tag(run, tag)
        ids.append(run)
    return store, ids


def test_runs_filter_sort_and_overlay_any_number(tmp_path):
    from fakes import train_args
    from waiting import wait_for

    from tui.app import N2NApp
    from tui.screens import RunCurvesScreen, RunsScreen
    from tui.widgets import LossPlot, PsnrPlot, RunsTable

    store, ids = many_runs(tmp_path)

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=store)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.press("ctrl+r")
            assert isinstance(app.screen, RunsScreen)
            table = app.screen.query_one(RunsTable)
            assert table.row_count == 5
            rows = lambda: [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]  # noqa
            for query, expect in (("engine:2", {ids[1], ids[3]}), ("state:finished engine:1", {ids[0]}),
                                  ("noise:gauss", {ids[1]}), ("baseline", {ids[0], ids[3]}),
                                  ("BASELINE again", {ids[3]}), ("", set(ids))):
                app.screen.query_one("#runs-filter").value = query
                await pilot.pause()
                assert set(rows()) == expect, query
            table.sort_by("best PSNR")
            assert rows() == list(reversed(ids))  # best first: the later runs score higher here
            table.sort_by("best PSNR")
            assert rows() == ids
            table.focus()
            for i in range(4):  # mark four, overlay them
                table.move_cursor(row=i)
                await pilot.press("m")
            assert len(table.marked) == 4
            await pilot.press("c")
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunCurvesScreen))
            assert len(app.screen.query_one(LossPlot)._runs) == 4
            assert len(app.screen.query_one(PsnrPlot)._runs) == 4
            await pilot.press("escape")
            await pilot.press("escape")
            await pilot.press("ctrl+q")

    asyncio.run(go())
    store.close()


def test_the_tag_is_beside_the_run_id_on_an_80_column_screen(tmp_path):
    """A note is how a person tells runs apart: it must not be the column past the screen's right edge."""
    from fakes import train_args

    from tui.app import N2NApp
    from tui.widgets import RunsTable
    from tui.widgets.runs_table import COLUMNS, TAG_WIDTH

    store, ids = many_runs(tmp_path)
    store.set_tag(ids[2], "a long note on this run, which goes on past any column's width")

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=store)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("ctrl+r")
            await pilot.pause()
            table = app.screen.query_one(RunsTable)
            tag = COLUMNS.index("tag")
            widths = [c.get_render_width(table) for c in table.columns.values()]
            assert sum(widths[:tag + 1]) <= table.size.width == 80
            assert str(table.get_row(ids[0])[tag]) == "baseline"
            cut = str(table.get_row(ids[2])[tag])
            assert len(cut) == TAG_WIDTH and cut.endswith("…") and cut.startswith("a long note on this run")
            app.screen.query_one("#runs-filter").value = "past"  # the filter reads the whole tag
            await pilot.pause()
            assert table.row_count == 1
            await pilot.press("ctrl+q")

    asyncio.run(go())
    store.close()
