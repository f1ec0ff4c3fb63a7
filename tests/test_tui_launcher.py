"""The launcher: defaults filled in, inline validation, launcher -> dashboard, load errors shown in place."""
from __future__ import annotations

import asyncio

import pytest
from fakes import FakeStore, FakeTrainer, train_args
from waiting import wait_for

from tui.app import N2NApp
from tui.screens import DashboardScreen, LauncherScreen


def value(app, field):
    return app.screen.query_one(f"#{field}").value


def error(app) -> str:
    return str(app.screen.query_one("#launcher-error").render())


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_defaults_are_filled_in(size, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # ./data holds the course files: the launcher picks them
    (tmp_path / "data").mkdir()
    for name in ("train_data.pkl", "val_data.pkl"):
        (tmp_path / "data" / name).write_bytes(b"")

    async def go():
        app = N2NApp(train_args(), store=FakeStore())
        async with app.run_test(size=size):
            assert isinstance(app.screen, LauncherScreen)
            assert (value(app, "engine"), value(app, "data"), value(app, "noise")) == (1, "course:data", "mix")
            assert (value(app, "epochs"), value(app, "batch_size"), value(app, "lr"), value(app, "seed")) == \
                ("1", "", "", "0")
            assert "found ./data" in str(app.screen.query_one("#hint-data").render())
            # every field is on screen at 80x24, and so is the start button
            assert value(app, "eval_every") == "auto"
            for f in ("engine", "data", "noise", "epochs", "batch_size", "lr", "subset", "eval_every", "seed",
                      "threads", "start"):
                region = app.screen.query_one(f"#{f}").region
                assert region.height and region.bottom <= size[1] - 1, f
    asyncio.run(go())


def test_inline_validation_names_the_field():
    async def go():
        app = N2NApp(train_args(), store=FakeStore())
        async with app.run_test() as pilot:
            screen = app.screen
            assert error(app) == "" and not screen.query_one("#start").disabled
            cases = [("epochs", "0", "epochs: must be a positive integer"),
                     ("lr", "-1", "lr: must be a positive number"),
                     ("lr", "fast", "lr: not a number"),
                     ("batch_size", "0", "batch_size: must be a positive integer"),
                     ("data", "bogus", "data: bad data spec"),
                     ("data", "course:/no/such/dir", "data: /no/such/dir: no train_data.pkl or val_data.pkl"),
                     ("data", "images:/no/such/dir", "data: /no/such/dir: no such folder"),
                     ("eval_every", "often", "eval_every: expected a whole number"),
                     ("eval_every", "-5", "eval_every: must be auto, 0 (epoch ends only) or a number of steps")]
            for field, text, message in cases:
                box = screen.query_one(f"#{field}")
                old = box.value
                box.value = text
                await pilot.pause()
                assert message in error(app), (field, text, error(app))
                assert box.has_class("-invalid") and screen.query_one("#start").disabled
                await pilot.press("ctrl+s")  # refused: still on the launcher
                assert isinstance(app.screen, LauncherScreen)
                box.value = old
                await pilot.pause()
                assert error(app) == "" and not box.has_class("-invalid")
    asyncio.run(go())


def test_enter_starts_the_run_and_opens_the_dashboard():
    async def go():
        seen = []
        store = FakeStore()

        def make(args):
            seen.append(args)
            return FakeTrainer(store=store, total_steps=30, delay=0.001), store

        app = N2NApp(train_args(runs_dir="somewhere"), store=store, make_trainer=make)
        async with app.run_test() as pilot:
            app.screen.query_one("#epochs").value = "3"
            app.screen.query_one("#lr").value = "2e-3"
            app.screen.query_one("#subset").value = "300"
            app.screen.query_one("#noise").value = "gaussian"
            app.screen.query_one("#seed").focus()
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
            assert await wait_for(pilot, lambda: app.screen.state == "finished")
        (args,) = seen
        assert (args.engine, args.data, args.noise, args.epochs, args.lr, args.subset, args.seed, args.runs_dir) == \
            (1, "sample", "gaussian", 3, 2e-3, 300, 0, "somewhere")
        assert args.headless is False and args.n_val == 1000  # the rest: `n2n-tui train`'s own defaults
    asyncio.run(go())


def test_a_load_error_is_shown_on_the_launcher():
    async def go():
        def make(args):
            from engine.data import DataError

            raise DataError("data/train_data.pkl: the first tensor has shape (10, 32, 32), expected N x 3 x H x W")

        app = N2NApp(train_args(), store=FakeStore(), make_trainer=make)
        async with app.run_test() as pilot:
            await pilot.click("#start")
            assert await wait_for(pilot, lambda: "✖" in error(app))
            assert "expected N x 3 x H x W" in error(app)
            assert isinstance(app.screen, LauncherScreen) and not app.screen.query_one("#start").disabled
    asyncio.run(go())


def test_ctrl_r_shows_past_runs_from_the_launcher():
    from fakes import stored_run

    from tui.screens import RunsScreen

    async def go():
        app = N2NApp(train_args(), store=FakeStore([stored_run("r1", 1, 50)]))
        async with app.run_test() as pilot:
            await pilot.press("ctrl+r")
            assert isinstance(app.screen, RunsScreen)
            assert app.screen.query_one("#runs-table").row_count == 1
            await pilot.press("escape")
            assert isinstance(app.screen, LauncherScreen)
            await pilot.press("ctrl+q")
        assert app.return_code == 0
    asyncio.run(go())


def test_the_cadence_field_and_fixed_noise_levels_reach_the_run():
    """The launcher's "evaluate every" field (auto, 0 or a step count) and the noise menu's fixed levels
    (gaussian:25 beside gaussian's random strength) end up in the run's configuration."""
    async def go():
        app = N2NApp(train_args(), store=FakeStore())
        async with app.run_test() as pilot:
            screen = app.screen
            noise = screen.query_one("#noise")
            options = [v for _, v in noise._options]
            assert options.index("gaussian") < options.index("gaussian:25") < options.index("poisson")
            noise.value = "gaussian:25"
            screen.query_one("#eval_every").value = "50"
            await pilot.pause()
            assert "sigma 25 for every image" in str(screen.query_one("#hint-noise").render())
            assert error(app) == "" and screen.config.noise == "gaussian:25" and screen.config.eval_every == 50
            screen.query_one("#eval_every").value = "auto"
            await pilot.pause()
            assert screen.config.eval_every == "auto"
    asyncio.run(go())

