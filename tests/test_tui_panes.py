"""The dashboard's side panes: the system pane, its numbers (``engine.system``: they match psutil's, and a run
without psutil loses only the cpu and memory numbers), and the log pane, which tails runner.log and wraps long lines
at its own width."""
from __future__ import annotations

import asyncio


def test_the_system_numbers_match_psutils(tmp_path):
    import os
    import shutil

    import psutil

    from engine.system import sample

    psutil.cpu_percent(interval=None)
    s = sample("r", 7, tmp_path)
    rss = psutil.Process().memory_info().rss
    free = shutil.disk_usage(tmp_path).free
    assert s.step == 7 and 0.0 <= s.cpu <= 100.0 * (os.cpu_count() or 1)
    assert abs(s.rss - rss) / rss < 0.05
    assert abs(s.disk_free - free) / free < 0.01
    assert s.gpu_util is None and s.gpu_mem is None  # no GPU in use here


def test_without_psutil_a_run_loses_only_the_cpu_and_memory_numbers(tmp_path, monkeypatch):
    """A broken install (psutil missing) once printed a traceback from the sampling thread into every run's output."""
    import sys
    import threading

    from engine.system import SystemMonitor, sample

    monkeypatch.setitem(sys.modules, "psutil", None)  # ``import psutil`` now raises ImportError
    s = sample("r", 1, tmp_path)
    assert s.cpu is None and s.rss is None and s.disk_free > 0

    class Trainer:
        run_id, step, device, _started, _done = "r", 1, "cpu", True, False

        def __init__(self):
            self.got = threading.Event()

        def publish(self, event):
            self.got.set()

    t = Trainer()
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    m = SystemMonitor(t, tmp_path, interval=0.01).start()
    assert t.got.wait(5), errors
    m.stop()
    assert errors == []


def in_app(widget, body):
    """Run ``body(widget, pilot)`` with ``widget`` mounted in a bare app."""
    from textual.app import App

    class One(App):
        def compose(self):
            yield widget

    async def go():
        async with One().run_test() as pilot:
            await body(widget, pilot)

    asyncio.run(go())


def test_the_system_pane_shows_the_numbers():
    from engine.events import SystemEvent
    from tui.widgets.system_pane import SystemPane

    async def body(pane, pilot):
        pane.show_sample(SystemEvent("r", cpu=63.4, rss=8.5e8, disk_free=5.12e10))
        text = pane.line.plain
        assert "cpu 63%" in text and "rss 850M" in text and "disk 51G free" in text and "gpu –" in text

    in_app(SystemPane(), body)


def test_the_log_pane_tails_the_run_log(tmp_path):
    from tui.widgets.log_pane import LogPane

    log = tmp_path / "runner.log"
    log.write_text("runner started\n")

    async def body(pane, pilot):
        pane.follow(log)
        assert pane.lines_read == 1
        with open(log, "a") as f:
            f.write("UserWarning: something torch said\npartial")
        assert pane.poll() == 1 and pane.lines_read == 2  # the partial line waits for its end
        with open(log, "a") as f:
            f.write(" line\n")
        assert pane.poll() == 1

    in_app(LogPane(), body)


def test_the_log_pane_wraps_long_lines_at_its_own_width(tmp_path):
    """`v` on a narrow side column: a long runner.log line is wrapped whole, not shown as a slice of a line laid out
    78 cells wide; it is laid out again when the pane (hidden at first) is shown or resized."""
    import asyncio

    from textual.app import App
    from textual.containers import Horizontal
    from textual.widgets import Static

    from tui.widgets.log_pane import LogPane

    log = tmp_path / "runner.log"
    words = ("2026-12-07 00:42:14 runner pid 11218 serving run 20261207-004214-3c5f (new run) "
             "and then the rest of a long line")
    log.write_text(words + "\n")

    class Side(App):
        CSS = "#side { width: 40; } LogPane { height: 12; }"

        def compose(self):
            with Horizontal():
                yield Static("main")
                with Horizontal(id="side"):
                    yield LogPane()

    async def go():
        async with Side().run_test(size=(100, 20)) as pilot:
            pane = pilot.app.query_one(LogPane)
            pane.display = False
            await pilot.pause()
            pane.follow(log)      # read while hidden, as the dashboard does at start
            pane.display = True   # v
            await pilot.pause()
            await pilot.pause()
            texts = [strip.text.rstrip() for strip in pane.lines]
            assert texts and all(len(t) <= pane.scrollable_content_region.width for t in texts), texts
            assert " ".join(texts).split() == words.split()

    asyncio.run(go())
