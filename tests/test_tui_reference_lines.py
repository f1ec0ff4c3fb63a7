"""Where the run stands (issue 26): the PSNR plot's reference lines (the noisy input, the best so far, the user's
marks), round tick labels on both plots, the best evaluation's step on the loss plot, and a header that never wraps."""
from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from pathlib import Path

import pytest
from fakes import FakeStore, FakeTrainer, scripted_events, stored_run, train_args
from textual.app import App

from sessions.marks import Mark
from tui.app import N2NApp
from tui.widgets import LossPlot, PsnrPlot, RunStatus
from tui.widgets.loss_plot import int_ticks, log_ticks, nice_ticks, row_ticks

NOISY = 20.2  # the scripted history's evaluations run from 20.75 to 22.55 dB


def history(run="fake0001", noisy=NOISY):
    """The scripted events, their evaluations carrying the noisy input's PSNR as the trainer's do."""
    return [dataclasses.replace(e, psnr_noisy=noisy) if e.kind == "eval" else e for e in scripted_events(run)]


def dashboard(tmp_path, marks=(), **kw):
    store = FakeStore([stored_run("aaaa1111", 1, 120)])
    trainer = FakeTrainer(store=store, **kw)
    args = train_args(runs_dir=str(tmp_path), mark=list(marks))
    return N2NApp(args, store=store, trainer=trainer, start=False)


async def fed(pilot, events):
    screen = pilot.app.screen
    for e in events:
        screen.events.put(e)
    screen.drain(force_plots=True)
    await pilot.pause()
    return screen


def plot_text(widget) -> str:
    return "\n".join(line.plain for line in widget.render().split())


def is_round_step(step: float) -> bool:
    """1, 2 or 5 x 10^k."""
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    return any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5, 10))


def assert_nice(ticks: list[float], labels: list[str]) -> None:
    assert len(ticks) >= 2, (ticks, labels)
    gaps = [round(b - a, 9) for a, b in zip(ticks, ticks[1:])]
    assert len(set(gaps)) == 1 and is_round_step(gaps[0]), (ticks, labels)
    decimals = {len(label.partition(".")[2]) for label in labels}
    assert decimals == {max(0, -math.floor(math.log10(gaps[0]) + 1e-9))}, labels  # as many as the step needs
    assert [float(label) for label in labels] == pytest.approx(ticks)


# ------------------------------------------------------------------------------------------- the PSNR plot's lines
def test_psnr_plot_draws_the_noisy_input_the_best_and_the_marks(tmp_path):
    async def go():
        app = dashboard(tmp_path, marks=["23:course net"])
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await fed(pilot, history())
            plot = screen.query_one(PsnrPlot)
            assert plot.noisy == NOISY
            lines = {line.kind: line for line in plot.lines}
            assert (lines["noisy"].psnr, lines["noisy"].label) == (NOISY, "noisy input 20.2 dB")
            assert (lines["mark"].psnr, lines["mark"].label) == (23.0, "course net 23 dB")
            assert lines["best"].psnr == pytest.approx(22.55, abs=0.01)
            assert plot.off_scale == []  # all near the curve: all on the scale
            lo, hi = plot.ylim
            assert lo <= NOISY and hi >= 23.0
            text = plot_text(plot)
            assert "noisy input 20.2 dB" in text and "course net 23 dB" in text and "┄" in text
    asyncio.run(go())


def test_the_noisy_input_arrives_with_the_first_evaluation(tmp_path):
    """The store keeps no baseline: before any evaluation event there is no line, the first one brings it."""
    async def go():
        app = dashboard(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            plot = app.screen.query_one(PsnrPlot)
            assert plot.noisy is None and plot.lines == []
            events = history()
            first_eval = next(i for i, e in enumerate(events) if e.kind == "eval")
            await fed(pilot, events[:first_eval])
            assert plot.noisy is None
            await fed(pilot, events[first_eval:first_eval + 1])
            assert plot.noisy == NOISY and [line.kind for line in plot.lines] == ["noisy", "best"]
    asyncio.run(go())


def test_a_far_line_stays_off_the_scale_and_is_named_at_the_edge():
    """A goal far above the curve would squeeze it flat: the y-range keeps to the curve and the lines near it."""
    class One(App):
        def compose(self):
            yield PsnrPlot(id="p")

    async def go():
        async with One().run_test(size=(80, 16)) as pilot:
            plot = pilot.app.query_one(PsnrPlot)
            for step, psnr in ((100, 24.0), (200, 24.8), (300, 25.3)):
                plot.add_point(step, psnr)
            plot.show_noisy(20.7)
            plot.show_marks([Mark(25.6, "course net"), Mark(32.0, "goal")])
            plot.redraw()
            await pilot.pause()
            assert {line.label for line in plot.off_scale} == {"noisy input 20.7 dB", "goal 32 dB"}
            lo, hi = plot.ylim
            assert 20.7 < lo <= 24.0 and 25.6 <= hi < 32
            text = plot_text(plot)
            assert "↑ goal 32 dB" in text and "↓ noisy input 20.7 dB" in text and "course net 25.6 dB" in text
    asyncio.run(go())


def test_on_a_short_plot_the_star_and_the_best_line_stay_in_sight():
    """Eight rows: the best (23.8) and a mark (24) fall on one row. The mark's label goes to the left end instead of
    covering the star at the right, and the dotted best line is drawn over the mark's."""
    class One(App):
        def compose(self):
            yield PsnrPlot(id="p")

    async def go():
        async with One().run_test(size=(60, 8)) as pilot:
            plot = pilot.app.query_one(PsnrPlot)
            for step, psnr in ((0, 14.6), (100, 21.8), (200, 23.8)):
                plot.add_point(step, psnr)
            plot.show_noisy(20.8)
            plot.show_marks([Mark(24.0, "course net")])
            plot.redraw()
            await pilot.pause()
            row = next(line for line in plot_text(plot).splitlines() if "course net 24 dB" in line)
            assert "★" in row and "┄" in row, row
            assert row.index("course net") < row.index("┄") < row.index("★"), row
    asyncio.run(go())


def test_marks_from_the_command_line_and_the_runs_folder_reach_the_plot(tmp_path):
    (tmp_path / "marks.toml").write_text('[[mark]]\npsnr = 21.5\nlabel = "last year"\n')

    async def go():
        app = dashboard(tmp_path, marks=["23:course net"])
        async with app.run_test(size=(100, 30)):
            plot = app.screen.query_one(PsnrPlot)
            assert [(m.psnr, m.label) for m in plot.marks] == [(21.5, "last year"), (23.0, "course net")]
    asyncio.run(go())


def test_a_bad_marks_file_is_said_not_raised(tmp_path):
    (tmp_path / "marks.toml").write_text("[[mark]]\npsnr = 'high'\n")

    async def go():
        app = dashboard(tmp_path)
        said = []
        app.notify = lambda message, **kw: said.append((message, kw.get("severity")))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            plot = app.screen.query_one(PsnrPlot)
            assert plot.marks == []
            assert len(said) == 1 and "marks.toml" in said[0][0] and said[0][1] == "error", said
            await fed(pilot, history())  # the run is watched as ever
            assert plot.n_points == 3
    asyncio.run(go())


# ----------------------------------------------------------------------------------------------- round tick labels
@pytest.mark.parametrize("lo, hi, n", [(20.75, 22.55, 4), (20.2, 23.0, 8), (8.3, 25.6, 5), (24.91, 25.02, 4),
                                       (0.0, 1.0, 2), (-3.2, 41.0, 6)])
def test_nice_ticks_are_round_and_evenly_spaced(lo, hi, n):
    ticks, labels = nice_ticks(lo, hi, n)
    assert_nice(ticks, labels)
    assert 2 <= len(ticks) <= n and lo - 1e-9 <= ticks[0] and ticks[-1] <= hi + 1e-9


@pytest.mark.parametrize("lo, hi, n", [(0.028, 0.1, 6), (0.028, 0.1, 3), (1e-5, 1e-3, 2), (1e-9, 1.0, 3),
                                       (0.021, 0.024, 3), (0.0036, 0.0041, 6), (0.003, 0.4, 4)])
def test_log_ticks_are_round_losses(lo, hi, n):
    ticks, labels = log_ticks([math.log10(lo), math.log10(hi)], n)
    assert 2 <= len(ticks) <= n
    values = [float(label) for label in labels]
    assert values == pytest.approx([10 ** t for t in ticks], rel=1e-6)
    for v in values:  # one or two significant digits: 0.03, 0.05, 0.1, 0.0036, 1e-05
        assert float(f"{v:.2g}") == pytest.approx(v, rel=1e-9), labels
    assert values == sorted(values) and lo * (1 - 1e-9) <= values[0] and values[-1] <= hi * (1 + 1e-9)


@pytest.mark.parametrize("lo, hi, rows", [(20.2, 23.0, 17), (20.75, 22.55, 6), (19.7, 22.9, 10), (24.91, 25.3, 8),
                                          (8.2, 25.6, 14), (20.7, 25.5, 25), (20.7, 25.5, 40), (0.5, 39.0, 30)])
def test_row_ticks_fall_on_rows_evenly(lo, hi, rows):
    """plotext puts a value on the nearest row: limits chosen so that every round tick is exactly on one, the same
    number of rows apart, and the range grows at most 1.5 times for it."""
    bottom, top, ticks, labels = row_ticks(lo, hi, rows)
    assert_nice(ticks, labels)
    assert bottom <= lo + 1e-9 and top >= hi - 1e-9 and top - bottom <= 1.5 * (hi - lo) + 1e-9
    at = [(t - bottom) / (top - bottom) * (rows - 1) for t in ticks]
    assert at == pytest.approx([round(a) for a in at], abs=1e-6), at
    gaps = {round(b - a) for a, b in zip(at, at[1:])}
    assert len(gaps) == 1 and gaps.pop() >= 2, at


def test_row_ticks_leave_a_short_plots_range_alone():
    """Six rows over 2.8 dB: ticks on rows would need 5 dB; the range stays and the round ticks go to the nearest
    rows."""
    assert row_ticks(20.2, 23.0, 6) == (20.2, 23.0, [21.0, 22.0, 23.0], ["21", "22", "23"])


def test_step_ticks_are_round():
    assert int_ticks(list(range(1, 121)))[1] == ["20", "40", "60", "80", "100", "120"]
    assert int_ticks([0, 200_000])[1] == ["0", "50k", "100k", "150k", "200k"]
    assert int_ticks([3, 5])[1] == ["3", "4", "5"]


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
def test_the_dashboards_axes_are_labelled_with_round_numbers(tmp_path, size):
    async def go():
        app = dashboard(tmp_path, marks=["23:course net"])
        async with app.run_test(size=size) as pilot:
            screen = await fed(pilot, history())
            await pilot.pause(0.1)
            psnr = screen.query_one(PsnrPlot)
            assert_nice(*psnr.yticks)
            rows = [i for i, line in enumerate(plot_text(psnr).splitlines()) if re.match(r"^\s*[0-9.]+┤", line)]
            assert len(rows) == len(psnr.yticks[0]) >= 2  # each label drawn, on a row of its own
            if size[1] >= 45:  # tall enough for limits that put them on rows evenly
                assert len({b - a for a, b in zip(rows, rows[1:])}) == 1, rows
            loss = screen.query_one(LossPlot)
            assert loss.yticks[1] and all(float(f"{float(v):.2g}") == float(v) for v in loss.yticks[1])
    asyncio.run(go())


# -------------------------------------------------------------------------------- the best step on the loss plot
def test_the_loss_plot_marks_the_best_evaluations_step(tmp_path):
    async def go():
        app = dashboard(tmp_path)
        async with app.run_test(size=(160, 45)) as pilot:
            screen = await fed(pilot, history())
            loss = screen.query_one(LossPlot)
            assert loss.best_step == 120 and loss.best_shown
            text = plot_text(loss)
            assert "┊ best PSNR @ step 120" in text  # the title says what the dotted line is
            assert text.count("┊") >= 5
    asyncio.run(go())


# ------------------------------------------------------------------------------------------- a header of two rows
LONG = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; 13.20 GiB "
        "already allocated; 1.02 GiB free; 13.50 GiB reserved in total by PyTorch)\nTraceback (most recent call)")
STATES = [("idle", ""), ("loading", ""), ("running", ""), ("paused", "loss was NaN at step 1234: paused"),
          ("stopping", ""), ("stopped", "stopped from the dashboard (x)"), ("finished", ""), ("failed", LONG)]


@pytest.mark.parametrize("width", [60, 80, 100])
def test_the_header_never_wraps(width):
    """Each of its two lines stays on its row, in every state, the state and the step always shown (a stopped run's
    message pushed the lr/ETA line out of the header at 100 columns)."""
    import tui.app

    class Header(App):
        CSS_PATH = str(Path(tui.app.__file__).parent / "app.tcss")

        def compose(self):
            yield RunStatus(id="status")

    async def go():
        app = Header()
        async with app.run_test(size=(width, 10)) as pilot:
            status = app.query_one(RunStatus)
            status.show_run("20240503-120000-cccc", 2, "cuda:0", 100, 234_567)
            status.show_step(123_456, 53, 0.000125, 12_345.0, 234_567, eta=3 * 3600 + 62)
            status.show_best(25.4321, 123_000)
            for state, message in STATES:
                status.show_state(state, message)
                await pilot.pause()
                assert status.region.height == 2
                rows = ["".join(seg.text for seg in strip) for strip in status.render_lines(status.region.reset_offset)]
                assert len(rows) == 2
                first, second = (row.strip() for row in rows)
                assert state in first and "step 123456/234567" in first, (state, rows)
                assert "best 25.43 dB" in second and "ETA" in second, (state, rows)
                for line in status.lines(status.size.width):
                    assert "\n" not in line.plain and line.cell_len <= status.size.width
                if message and width >= 80:
                    assert message.split()[0] in first, (state, rows)  # the reason shows, cut if need be
    asyncio.run(go())


def test_an_attached_run_draws_its_baseline_from_the_store_before_any_new_evaluation(tmp_path):
    """The store keeps the noisy input's PSNR (schema 7): a dashboard opened on a run that evaluated already shows the
    line at once, not only after the run's next evaluation."""
    from engine.config import RunConfig
    from engine.events import EvalEvent, StepEvent
    from sessions import Recorder, Store

    store = Store(tmp_path / "runs")
    run = store.new_run(RunConfig())
    rec = Recorder(store, run)
    rec(StepEvent(run, 1, 1, 0.1, 1e-3, 100.0, 10))
    rec(EvalEvent(run, 1, 1, 21.5, 21.5, psnr_noisy=20.25))
    rec.flush()

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=store,
                     trainer=FakeTrainer(run_id=run, store=None), start=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert app.screen.query_one(PsnrPlot).noisy == 20.25

    asyncio.run(go())
    store.close()
