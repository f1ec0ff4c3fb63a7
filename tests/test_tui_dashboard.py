"""The dashboard with a fake trainer: every key, the event pump, the widgets. Fast: no torch training."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fakes import FakeStore, FakeTrainer, patches, scripted_events, stored_run, train_args
from waiting import wait_for

from sessions.export import BetterTargetError
from sessions.handle import LocalRun
from tui.app import N2NApp
from tui.screens import ConfirmScreen, DashboardScreen, LrScreen, RunCurvesScreen, RunsScreen
from tui.widgets import EventLog, LossPlot, PsnrPlot, RunStatus, SamplePatches
from tui.widgets.sample_patches import choose_layout

SIZES = [(80, 24), (160, 48)]


def make_app(store=None, **kw):
    store = store or FakeStore([stored_run("aaaa1111", 1, 120), stored_run("bbbb2222", 2, 90, 1.3)])
    trainer = FakeTrainer(store=store, **kw)
    return N2NApp(train_args(), store=store, trainer=trainer), trainer, store


def kinds(store):
    return [(k, d) for _, k, d in store.events]


def log_text(app) -> str:
    return "\n".join(app.screen.query_one(EventLog).entries)


@pytest.mark.parametrize("size", SIZES)
def test_run_to_the_end_updates_every_widget(size):
    async def go():
        app, trainer, store = make_app(total_steps=150, delay=0.001)
        async with app.run_test(size=size) as pilot:
            assert isinstance(app.screen, DashboardScreen)
            assert await wait_for(pilot, lambda: app.screen.state == "finished")
            screen = app.screen
            screen.drain(force_plots=True)
            assert screen.query_one(LossPlot).n_points == 150
            assert screen.query_one(PsnrPlot).n_points == 3
            assert screen.query_one(PsnrPlot).best == (150, 21.5)
            assert screen.query_one(SamplePatches).has_samples
            assert await wait_for(pilot, lambda: screen.query_one(SamplePatches).layout_info[2] >= 4)  # drawn
            status = screen.query_one(RunStatus)
            assert (status.state, status.step, status.best) == ("finished", 150, (21.5, 150))
            assert screen.query_one("#progress").progress == 150
            await pilot.press("q")  # finished: no question asked
            await pilot.pause()
        assert app.return_code == 0
        assert ("quit", "dashboard closed, run finished") in kinds(store)
    asyncio.run(go())


def test_event_pump_coalesces_steps_into_few_redraws():
    async def go():
        app, trainer, store = make_app()
        app.start_training = False
        async with app.run_test():
            screen = app.screen
            plot = screen.query_one(LossPlot)
            redraws = []
            orig = plot.redraw
            plot.redraw = lambda: (redraws.append(1), orig())
            for e in scripted_events(steps=120):
                screen.events.put(e)
            assert screen.drain() == 1 + 120 + 3
            assert plot.n_points == 120 and len(redraws) <= 1
            screen.drain(force_plots=True)
            assert len(redraws) == 1
    asyncio.run(go())


@pytest.mark.parametrize("size", SIZES)
def test_space_pauses_and_resumes(size):
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01)
        async with app.run_test(size=size) as pilot:
            assert await wait_for(pilot, lambda: trainer.step > 5)
            await pilot.press("space")
            assert await wait_for(pilot, lambda: app.screen.state == "paused")
            frozen = trainer.step
            await pilot.pause(0.3)
            assert trainer.step == frozen
            assert app.screen.query_one(RunStatus).state == "paused"
            await pilot.press("space")
            assert await wait_for(pilot, lambda: trainer.step > frozen + 5)
            assert await wait_for(pilot, lambda: app.screen.state == "running")
            assert ("control", "pause") in kinds(store) and ("control", "resume") in kinds(store)
            trainer.stop()
    asyncio.run(go())


def test_l_opens_lr_input_and_rejects_bad_values():
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01)
        async with app.run_test() as pilot:
            await pilot.press("l")
            assert isinstance(app.screen, LrScreen)
            box = app.screen.query_one("#lr-input")
            assert box.has_focus and box.value == "0.001"
            for bad in ("abc", "0", "-1", "nan", "inf"):
                box.value = bad
                await pilot.press("enter")
                assert isinstance(app.screen, LrScreen), bad
                assert "✖" in str(app.screen.query_one("#lr-message").render()), bad
            assert trainer.lr == 1e-3
            box.value = ""
            await pilot.press(*"5e-3", "enter")
            assert not isinstance(app.screen, LrScreen)
            assert trainer.lr == 5e-3
            assert ("control", "lr") in kinds(store)
            await pilot.press("l", "escape")  # cancel changes nothing
            assert trainer.lr == 5e-3 and isinstance(app.screen, DashboardScreen)
            await wait_for(pilot, lambda: "lr 0.001 -> 0.005" in log_text(app))
            assert "lr 0.001 -> 0.005" in log_text(app)
            trainer.stop()
    asyncio.run(go())


def test_brackets_halve_and_double_lr():
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01)
        async with app.run_test() as pilot:
            await pilot.press("left_square_bracket")
            assert trainer.lr == pytest.approx(5e-4)
            await pilot.press("right_square_bracket", "right_square_bracket")
            assert trainer.lr == pytest.approx(2e-3)
            assert [d for k, d in kinds(store) if k == "control"].count("lr") == 3
            assert "lr 0.002" in str(app.screen.query_one(RunStatus).render())
            trainer.stop()
    asyncio.run(go())


def test_x_asks_then_stops_the_run():
    from tui.screens import ConfirmScreen, DashboardScreen

    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01)
        async with app.run_test() as pilot:
            assert await wait_for(pilot, lambda: trainer.step > 3)
            await pilot.press("x")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")  # no: nothing happens
            assert isinstance(app.screen, DashboardScreen)
            step = trainer.step
            assert await wait_for(pilot, lambda: trainer.step > step + 3)  # it trains on
            await pilot.press("x", "y")
            assert await wait_for(pilot, lambda: app.screen.state == "stopped")
            assert await wait_for(pilot, lambda: not trainer.alive)
            assert ("state", "stopped") in kinds(store)
            await pilot.press("q")  # stopped: quits without asking
            await pilot.pause()
        assert app.return_code == 0
    asyncio.run(go())


def test_q_asks_while_active_and_y_stops_cleanly():
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01)
        async with app.run_test() as pilot:
            assert await wait_for(pilot, lambda: trainer.step > 3)
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert isinstance(app.screen, DashboardScreen) and trainer.state == "running"
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for(pilot, lambda: not app.is_running)
        assert trainer.state == "stopped"
        assert app.return_code == 0
        events = kinds(store)
        assert ("quit", "dashboard closed, run stopped") in events
        assert events.index(("state", "stopped")) > events.index(("quit", "dashboard closed, run stopped"))
    asyncio.run(go())


def test_ctrl_q_goes_through_the_same_confirmation():
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01)
        async with app.run_test() as pilot:
            await pilot.press("ctrl+q")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("escape")
            assert trainer.state in ("idle", "running")
            trainer.stop()
    asyncio.run(go())


def test_s_exports_through_the_verified_export(tmp_path):
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01, every=5)
        app.args.export_to = str(tmp_path / "bestmodel.pth")
        calls = []

        def fake_export(to, force=False):
            calls.append((store, trainer.run_id, str(to)))
            store.add_event(trainer.run_id, "export", str(to))  # the real export_run records its own event
            return {"path": str(to), "psnr": 21.25}

        async with app.run_test() as pilot:
            trainer.export = fake_export
            assert await wait_for(pilot, lambda: trainer.best_psnr is not None)
            await pilot.press("s")
            assert await wait_for(pilot, lambda: ("export" in [k for k, _ in kinds(store)]))
            assert calls == [(store, trainer.run_id, str(tmp_path / "bestmodel.pth"))]
            assert "21.25 dB, verified" in log_text(app)

            def failing(to, force=False):
                raise RuntimeError("verification failed: PSNR 3.1 dB after reload")

            trainer.export = failing
            await pilot.press("s")
            assert await wait_for(pilot, lambda: "export-failed" in [k for k, _ in kinds(store)])
            assert "export failed: verification failed" in log_text(app)
            trainer.stop()
    asyncio.run(go())


def test_s_asks_before_replacing_a_better_file(tmp_path):
    async def go():
        target = tmp_path / "bestmodel.pth"
        target.write_bytes(b"weights that score better")
        app, trainer, store = make_app(total_steps=100000, delay=0.01, every=5)
        app.args.export_to = str(target)
        calls = []
        async with app.run_test() as pilot:
            def exporter(to, force=False):  # export_run's refusal of better weights
                if not force:
                    raise BetterTargetError("better", theirs=99.0, ours=20.1)
                calls.append(str(to))
                return {"path": str(to), "psnr": 20.1}

            trainer.export = exporter
            assert await wait_for(pilot, lambda: trainer.best_psnr is not None)
            await pilot.press("s")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "99.00 dB" in str(app.screen.query_one("#confirm-question").render())
            await pilot.press("n")
            assert await wait_for(pilot, lambda: "export-cancelled" in [k for k, _ in kinds(store)])
            assert calls == [] and target.read_bytes() == b"weights that score better"
            await pilot.press("s")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            assert await wait_for(pilot, lambda: calls == [str(target)])
            trainer.stop()
    asyncio.run(go())


def test_s_before_any_evaluation_only_warns():
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01, every=10**9)
        async with app.run_test() as pilot:
            trainer.export = lambda *a, **k: pytest.fail("nothing to export yet")
            await pilot.press("s")
            await pilot.pause(0.1)
            assert "export" not in [k for k, _ in kinds(store)]
            trainer.stop()
    asyncio.run(go())


def test_r_shows_past_runs_opens_one_and_compares_two():
    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.01)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("r")
            assert isinstance(app.screen, RunsScreen)
            table = app.screen.query_one("#runs-table")
            assert table.row_count == 2
            await pilot.press("enter")
            assert isinstance(app.screen, RunCurvesScreen) and len(app.screen.runs) == 1
            assert app.screen.runs[0]["id"] == "bbbb2222"  # newest first
            assert app.screen.query_one(LossPlot).n_points == 90
            assert app.screen.query_one(PsnrPlot).n_points == 3
            await pilot.press("escape")
            assert isinstance(app.screen, RunsScreen)
            await pilot.press("c")  # nothing marked: a warning, no screen
            assert isinstance(app.screen, RunsScreen)
            await pilot.press("m", "down", "m", "c")
            assert isinstance(app.screen, RunCurvesScreen)
            assert sorted(r["id"] for r in app.screen.runs) == ["aaaa1111", "bbbb2222"]
            assert app.screen.query_one(LossPlot).n_points == 120 + 90
            await pilot.press("escape", "escape")
            assert isinstance(app.screen, DashboardScreen)
            trainer.stop()
    asyncio.run(go())


def test_trainer_crash_is_shown_not_raised():
    """A run in this process whose ``run`` itself raises: its handle says it failed, the dashboard shows why."""
    async def go():
        _, trainer, store = make_app(total_steps=100000, delay=0.01)

        def boom():
            raise RuntimeError("CUDA out of memory")

        trainer.run = boom
        app = N2NApp(train_args(), store=store, trainer=LocalRun(trainer, store))
        async with app.run_test() as pilot:
            assert await wait_for(pilot, lambda: app.screen.state == "failed")
            assert "CUDA out of memory" in log_text(app)
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0
    asyncio.run(go())


def test_sample_layout_fills_the_space():
    assert choose_layout(32, 11, 3) == (2, 1, 8)
    shown, groups, tile = choose_layout(80, 30, 4)
    assert tile >= 16 and shown >= 2
    assert choose_layout(6, 2, 3) == (0, 1, 0)  # too small: nothing, no crash


def test_samples_widget_draws_half_blocks_with_pixel_colours():
    async def go():
        app, trainer, store = make_app()
        app.start_training = False
        async with app.run_test(size=(120, 40)) as pilot:
            w = app.screen.query_one(SamplePatches)
            noisy, denoised, clean = patches(2)
            w.show_samples(noisy, denoised, clean)
            await pilot.pause()
            shown, groups, tile = w.layout_info
            assert tile >= 8
            strip = w.render_line(1)
            cells = [s for s in strip if s.text and set(s.text) == {"▀"}]
            assert cells and all(s.style.color.triplet and s.style.bgcolor.triplet for s in cells)
    asyncio.run(go())


def test_resizing_while_points_arrive_never_crashes():
    from tui.widgets import LossPlot, PsnrPlot

    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.002, every=20)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            for size in [(79, 24), (40, 12), (120, 40), (41, 13), (80, 24), (200, 60), (40, 12), (80, 24)] * 2:
                await pilot.resize_terminal(*size)
                screen.drain(force_plots=True)  # new points drawn at this size, then rendered again on resize
                await pilot.pause(0.05)
            assert app.is_running and screen.query_one(LossPlot).n_points > 20
            assert screen.query_one(PsnrPlot).n_points >= 1
            trainer.stop()
    asyncio.run(go())


def test_loss_axis_labels_read_top_down_at_40x12():
    """Larger losses above smaller ones, at the smallest size too (the labels were upside down at 40x12): in the
    dashboard, where the plot is only a few rows high, and in a plot of its own."""
    import re

    from test_tui_snapshots import dashboard_app, feed_history
    from textual.app import App

    from tui.widgets import LossPlot

    def labels(plot) -> list[float]:
        lines = [line.plain for line in plot.render().split()]
        return [float(m.group(1)) for line in lines if (m := re.match(r"^\s*([0-9.e+-]+)\s*┤", line))]

    class One(App):
        def compose(self):
            yield LossPlot(id="p")

    async def go():
        app = dashboard_app()
        async with app.run_test(size=(40, 12)) as pilot:
            await feed_history(pilot)
            await pilot.pause(0.1)
            found = labels(app.screen.query_one(LossPlot))
            assert found == sorted(found, reverse=True), found
        app = One()
        async with app.run_test(size=(40, 12)) as pilot:
            plot = app.query_one(LossPlot)
            plot.add_points([(i, 0.5 / i) for i in range(1, 200)])
            plot.redraw()
            await pilot.pause(0.1)
            found = labels(plot)
            assert len(found) >= 2 and found == sorted(found, reverse=True), found
    asyncio.run(go())


def test_the_replace_question_fits_at_80x24():
    from textual.app import App

    question = ("/home/user/project/Miniproject_1/bestmodel.pth already scores 28.11 dB, better than this run's "
                "best 21.02 dB on the same validation images. Replace it?")

    import tui.app

    class Styled(App):
        CSS_PATH = str(Path(tui.app.__file__).parent / "app.tcss")

    async def go():
        app = Styled()
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(ConfirmScreen(question))
            await pilot.pause(0.1)
            label = app.screen.query_one("#confirm-question")
            text = "".join(str(s.text) for s in label.render_lines(label.region.reset_offset))
            assert "Replace it?" in text.replace("\n", " ") or "Replace it?" in " ".join(text.split())
            assert label.region.height >= 3 and app.screen.region.contains_region(label.region)
    asyncio.run(go())
