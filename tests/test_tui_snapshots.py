"""SVG snapshots of the main screens (pytest-textual-snapshot), deterministic: a fake trainer fed a fixed event
history, fixed stored runs, no clock on screen. After an intended layout change: pytest --snapshot-update."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from fakes import FakeStore, FakeTrainer, scripted_events, stored_run, train_args

from tui.app import N2NApp

NO_RUNS = str(Path(__file__).parent / "no-runs-here")  # never created: no marks.toml of anyone's on the snapshots


def store():
    return FakeStore([stored_run("20240501-100000-aaaa", 1, 300), stored_run("20240502-093000-bbbb", 2, 200, 1.3)])


def dashboard_app(marks=()):
    s = store()
    return N2NApp(train_args(runs_dir=NO_RUNS, mark=list(marks)), store=s,
                  trainer=FakeTrainer("20240503-120000-cccc", store=s), start=False)


async def feed_history(pilot, noisy: float | None = None):
    """The scripted run; with ``noisy``, its evaluations carry the noisy input's PSNR, as the trainer's do."""
    screen = pilot.app.screen
    for e in scripted_events("20240503-120000-cccc"):
        if e.kind == "eval" and noisy is not None:
            e = dataclasses.replace(e, psnr_noisy=noisy)
        screen.events.put(e)
    screen.drain(force_plots=True)
    await pilot.pause()


async def feed_history_with_baseline(pilot):
    await feed_history(pilot, noisy=20.2)


def test_dashboard_80x24(snap_compare):
    assert snap_compare(dashboard_app(), terminal_size=(80, 24), run_before=feed_history)


def test_dashboard_160x45(snap_compare):
    assert snap_compare(dashboard_app(), terminal_size=(160, 45), run_before=feed_history)


def test_dashboard_with_baseline_and_mark_80x24(snap_compare):
    """The noisy input's line, the best so far, a mark near the curve and one far above it (named at the top)."""
    app = dashboard_app(marks=["23:course net", "30:goal"])
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed_history_with_baseline)


def test_dashboard_with_baseline_and_mark_160x45(snap_compare):
    app = dashboard_app(marks=["23:course net", "30:goal"])
    assert snap_compare(app, terminal_size=(160, 45), run_before=feed_history_with_baseline)


def test_launcher_80x24(snap_compare, monkeypatch):
    import engine.data

    monkeypatch.setattr(engine.data, "default_spec", lambda: "sample")  # no ./data on this machine or that one
    assert snap_compare(N2NApp(train_args(), store=store()), terminal_size=(80, 24))


def test_compare_two_runs_100x30(snap_compare):
    app = N2NApp(train_args(), store=store(), trainer=None)

    async def open_compare(pilot):
        await pilot.press("ctrl+r", "m", "down", "m", "c")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=open_compare)


def many_store():
    runs = [stored_run(f"20240501-1{i}0000-{c * 4}", 1 + i % 2, 300 - 40 * i, 1.0 + 0.15 * i)
            for i, c in enumerate("abcde")]
    for r, tag, noise in zip(runs, ["baseline", "wide", "", "baseline again", "l2"],
                             ["mix", "gaussian:25", "poisson", "mix", "mix"]):
        r["tag"] = tag
        r["config"]["noise"] = noise
    runs[2]["state"] = "stopped"
    return FakeStore(runs)


def test_runs_filtered_and_sorted_120x24(snap_compare):
    app = N2NApp(train_args(), store=many_store(), trainer=None)

    async def filter_and_sort(pilot):
        await pilot.press("ctrl+r")
        app.screen.query_one("#runs-filter").value = "noise:mix"
        await pilot.pause()
        from tui.widgets import RunsTable

        app.screen.query_one(RunsTable).sort_by("best PSNR")
        app.screen.query_one(RunsTable).focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 24), run_before=filter_and_sort)


def test_overlay_of_four_runs_120x30(snap_compare):
    app = N2NApp(train_args(), store=many_store(), trainer=None)

    async def overlay(pilot):
        await pilot.press("ctrl+r", "m", "down", "m", "down", "m", "down", "m", "c")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 30), run_before=overlay)
