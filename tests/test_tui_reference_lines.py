"""Where the run stands (issue 26): a header that never wraps."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.app import App

from tui.widgets import RunStatus

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
