"""The dashboard on the real engine-1 Trainer and the real sessions store: every key reaches the trainer and the
store, `s` writes a bestmodel.pth a fresh Model() loads, quitting leaves the run recorded as stopped.

Tiny runs (96 training pairs, 32 validation pairs, batch 16, conftest's narrow network) on one shared synthetic data
set, so the file stays fast; the slow test goes through the launcher, the real data loading and the real network."""
from __future__ import annotations

import asyncio

import pytest
from fakes import train_args
from waiting import wait_for

from sessions.handle import LocalRun

torch = pytest.importorskip("torch")
Trainer = pytest.importorskip("engine.trainer").Trainer
Store = pytest.importorskip("sessions").Store
Recorder = pytest.importorskip("sessions").Recorder

from engine.config import RunConfig  # noqa: E402
from engine.data import Dataset  # noqa: E402
from tui.app import N2NApp  # noqa: E402
from tui.screens import ConfirmScreen, DashboardScreen, LrScreen  # noqa: E402
from tui.widgets import LossPlot, PsnrPlot, SamplePatches  # noqa: E402

N_TRAIN, N_VAL, BATCH = 96, 32, 16


@pytest.fixture(scope="module")
def dataset():
    """Smooth random images with Gaussian noise, built in milliseconds (the sample photos take seconds)."""
    g = torch.Generator().manual_seed(0)
    n = N_TRAIN + N_VAL
    clean = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g) * 255, size=(32, 32),
                                            mode="bilinear", align_corners=False)

    def noisy():
        return (clean + 25 * torch.randn(clean.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)

    a, b, c = noisy(), noisy(), clean.round().to(torch.uint8)
    return Dataset(a[:N_TRAIN], b[:N_TRAIN], a[N_TRAIN:], c[N_TRAIN:], "sample", "gaussian")


def new_run(tmp_path, dataset, epochs=200):
    store = Store(tmp_path / "runs")
    config = RunConfig(engine=1, data="sample", noise="gaussian", epochs=epochs, batch_size=BATCH, lr=1e-3,
                       subset=N_TRAIN, n_val=N_VAL, seed=0, device="cpu")
    run_id = store.new_run(config)
    trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), dataset=dataset,
                      sinks=[Recorder(store, run_id)])
    return trainer, store


def event_kinds(store, run_id):
    return [e["kind"] for e in store.get_run(run_id)["events"]]


def test_every_key_on_a_real_run(tmp_path, dataset, tiny_models):
    trainer, store = new_run(tmp_path, dataset)
    target = tmp_path / "export" / "bestmodel.pth"
    target.parent.mkdir()
    args = train_args(runs_dir=str(tmp_path / "runs"), export_to=str(target))

    async def go():
        app = N2NApp(args, store=store, trainer=LocalRun(trainer, store))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, DashboardScreen)
            assert await wait_for(pilot, lambda: trainer.step >= 2 and trainer.best_psnr is not None)

            # space: pause stops the steps
            await pilot.press("space")
            assert await wait_for(pilot, lambda: trainer.state == "paused")
            frozen = trainer.step
            await pilot.pause(0.5)
            assert trainer.step == frozen
            assert await wait_for(pilot, lambda: screen.state == "paused")

            # ] and [ double / halve; l sets it through #lr-input (bad input refused first)
            await pilot.press("right_square_bracket")
            assert await wait_for(pilot, lambda: trainer.lr == pytest.approx(2e-3))
            await pilot.press("left_square_bracket", "left_square_bracket")
            assert await wait_for(pilot, lambda: trainer.lr == pytest.approx(5e-4))
            await pilot.press("l")
            assert isinstance(app.screen, LrScreen)
            app.screen.query_one("#lr-input").value = "-3"
            await pilot.press("enter")
            assert isinstance(app.screen, LrScreen)
            app.screen.query_one("#lr-input").value = "3e-4"
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: trainer.lr == pytest.approx(3e-4))
            assert trainer.model.learning_rate == pytest.approx(3e-4)

            # space again: training goes on
            await pilot.press("space")
            assert await wait_for(pilot, lambda: trainer.step > frozen + 2)

            # s, once training beat the untrained start: the verified export writes a bestmodel.pth that a fresh
            # Model() loads (weights no better than the noisy input are refused)
            assert await wait_for(pilot, lambda: (trainer.best_step or 0) > 0)
            await pilot.press("s")
            assert await wait_for(pilot, lambda: target.is_file() and "export" in event_kinds(store, trainer.run_id))
            exported = [e for e in store.get_run(trainer.run_id)["checkpoints"] if e["kind"] == "export"]
            assert exported[0]["psnr"] > trainer.psnr_noisy  # better than the noisy input, measured again

            # widgets followed the run
            assert await wait_for(pilot, lambda: screen.query_one(LossPlot).n_points >= 2)
            assert screen.query_one(PsnrPlot).n_points >= 1
            assert screen.query_one(SamplePatches).has_samples

            # q asks while the run is active; y stops it cleanly and closes the app
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            assert await wait_for(pilot, lambda: not app.is_running)
        return app

    app = asyncio.run(go())
    assert app.return_code == 0
    assert trainer.state == "stopped" and not trainer.alive
    run = store.get_run(trainer.run_id)
    assert run["state"] == "stopped" and run["message"] == "stopped from the dashboard (q)"
    kinds = [e["kind"] for e in run["events"]]
    for kind in ("pause", "resume", "lr", "export", "quit", "stop"):
        assert kind in kinds, (kind, kinds)
    assert [e["detail"] for e in run["events"] if e["kind"] == "lr"][-1].endswith("0.0003")

    from engine.metrics import psnr
    from engine.models import new_model

    model = new_model(1, "cpu")
    model.load_pretrained_model(str(target))
    out = model.predict(dataset.val_input)
    assert out.shape == dataset.val_input.shape
    # the file holds the best weights at the time of the export (training went on afterwards)
    exported = [c for c in run["checkpoints"] if c["kind"] == "export"]
    assert psnr(out, dataset.val_target) == pytest.approx(exported[0]["psnr"], abs=0.05)


def test_x_stops_and_then_q_quits_without_asking(tmp_path, dataset, tiny_models):
    trainer, store = new_run(tmp_path, dataset)

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=store, trainer=LocalRun(trainer, store))
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: trainer.step >= 1)
            await pilot.press("x", "y")
            assert await wait_for(pilot, lambda: app.screen.state == "stopped")
            await pilot.press("q")
            assert await wait_for(pilot, lambda: not app.is_running)
        return app

    app = asyncio.run(go())
    assert app.return_code == 0
    run = store.get_run(trainer.run_id)
    assert run["state"] == "stopped" and run["message"] == "stopped from the dashboard (x)"
    assert "stop" in [e["kind"] for e in run["events"]] and "quit" in [e["kind"] for e in run["events"]]


@pytest.mark.slow
def test_launcher_to_dashboard_with_the_real_make_trainer(tmp_path):
    """The whole path a new user takes: launcher, defaults edited, data loaded, run trained to the end."""

    async def go():
        store = Store(tmp_path / "runs")
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=store)
        async with app.run_test(size=(80, 24)) as pilot:
            s = app.screen
            s.query_one("#subset").value = "64"
            s.query_one("#batch_size").value = "16"
            s.query_one("#epochs").value = "2"
            s.query_one("#seed").focus()
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=120)
            assert await wait_for(pilot, lambda: app.screen.state == "finished", timeout=300)
            app.screen.drain(force_plots=True)
            assert app.screen.query_one(LossPlot).n_points == 8
            assert app.screen.query_one(PsnrPlot).n_points == 3  # step 0 and two epoch ends
            await pilot.press("q")
            assert await wait_for(pilot, lambda: not app.is_running)
        return store

    store = asyncio.run(go())
    (run,) = store.list_runs()
    assert run["state"] == "finished" and run["step"] == 8
