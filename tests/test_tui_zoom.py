"""The zoom view: `z` on the dashboard opens the samples at full resolution (one pixel per half-block cell);
arrows step through samples and through every stored evaluation; SVG snapshots at 80x24 (stacked) and 140x30."""
from __future__ import annotations

import asyncio
from pathlib import Path

import torch
from fakes import patches
from test_tui_dashboard import make_app
from textual.app import App
from waiting import wait_for

import tui
from tui.screens import DashboardScreen, ZoomScreen
from tui.widgets import ZoomView
from tui.widgets.zoom_view import error_map

RUN = "20240503-120000-cccc"


class SampleStore:
    """The store's samples API over fixed patches: evaluations at steps 0, 40 and 80."""

    def __init__(self, steps=(0, 40, 80)):
        self.by_step = {s: patches(k=3, seed=s) for s in steps}

    def samples(self, run_id, step=None):
        steps = sorted(self.by_step)
        step = steps[-1] if step is None else step
        noisy, denoised, clean = self.by_step[step]
        return {"steps": steps, "step": step, "noisy": noisy, "denoised": denoised, "clean": clean}


class ZoomApp(App):
    CSS_PATH = Path(tui.__file__).parent / "app.tcss"

    def __init__(self, store, latest=None):
        super().__init__()
        self.store, self.latest = store, latest

    def on_mount(self) -> None:
        self.push_screen(ZoomScreen(self.store, RUN, latest=self.latest))


def title(app) -> str:
    return str(app.screen.query_one("#zoom-title").render())


def test_arrows_step_through_samples_and_evaluations():
    async def go():
        store = SampleStore()
        app = ZoomApp(store, latest=patches(k=3, seed=120))  # the dashboard's newest, not stored yet
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert screen.steps == [0, 40, 80, "latest"] and "latest evaluation (evaluation 4/4)" in title(app)
            assert "sample 1/3" in title(app) and " dB → denoised " in title(app)
            await pilot.press("right", "right")
            assert "sample 3/3" in title(app)
            await pilot.press("right")
            assert "sample 1/3" in title(app)  # wraps around
            await pilot.press("up")
            assert "step 80 (evaluation 3/4)" in title(app)
            await pilot.press("up", "up", "up")
            assert "step 0 (evaluation 1/4)" in title(app)
            await pilot.press("end")
            assert "evaluation 4/4" in title(app)
            store.by_step[120] = patches(k=3, seed=120)  # the store caught up with the live run
            await pilot.press("up")
            assert screen.steps == [0, 40, 80, 120] and "step 80 (evaluation 3/4)" in title(app)
            assert screen.query_one(ZoomView).per_row == 2  # 80 columns: two 32 px tiles per row
            await pilot.press("escape")
            assert not isinstance(app.screen, ZoomScreen)
    asyncio.run(go())


def test_tiles_side_by_side_where_they_fit_and_full_resolution():
    async def go():
        app = ZoomApp(SampleStore())
        async with app.run_test(size=(140, 30)):
            view = app.screen.query_one(ZoomView)
            assert view.per_row == 4 and view.size.height == 1 + 16  # a label row and 32 px as 16 cell rows
            strip = view.render_line(1)
            assert strip.cell_length == view.size.width and "▀" in strip.text
            assert strip.text.index(" ") == 32  # one pixel per cell: the first tile is 32 cells wide
    asyncio.run(go())


def test_error_map_is_black_where_exact_and_bright_where_wrong():
    clean = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    wrong = clean.clone()
    wrong[:, 0, 0] = 200
    heat = error_map(wrong, clean)
    assert heat[:, 1, 1].tolist() == [0, 0, 0] and heat[:, 0, 0].tolist() == [255, 255, 255]


def test_z_on_the_dashboard_opens_the_zoom_on_the_latest_samples():
    async def go():
        app, trainer, store = make_app(total_steps=100, delay=0.001)
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: app.screen.state == "finished")
            app.screen.drain(force_plots=True)
            await pilot.press("z")
            assert isinstance(app.screen, ZoomScreen)
            assert app.screen.steps == ["latest"] and "sample 1/3" in title(app)  # a store without patches
            await pilot.press("z")
            assert isinstance(app.screen, DashboardScreen)
    asyncio.run(go())


def test_zoom_80x24(snap_compare):
    assert snap_compare(ZoomApp(SampleStore()), terminal_size=(80, 24))


def test_zoom_140x30(snap_compare):
    async def next_sample(pilot):
        await pilot.press("right", "up")
    assert snap_compare(ZoomApp(SampleStore()), terminal_size=(140, 30), run_before=next_sample)
