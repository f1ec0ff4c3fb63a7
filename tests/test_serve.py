"""``n2n-tui serve`` in a real headless Chromium (Debian's ``chromium``, driven by Playwright with
``executable_path``; nothing is downloaded): the page draws the app, keys reach it (past runs, attach to a live run,
pause it), a screenshot is taken, and closing the browser leaves the run training."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from waiting import wait_until

from sessions import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"),
]
CHROME_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state(runs, run_id) -> str:
    with Store(runs, create=False, readonly=True) as s:
        return s.get_run(run_id, metrics=False, events=False)["state"]


def test_the_app_in_a_browser_attaches_to_a_live_run(tmp_path):
    playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    from engine.config import RunConfig
    from sessions.launch import spawn

    runs = tmp_path / "runs"
    config = RunConfig(engine=1, data="sample", noise="poisson", epochs=1000, batch_size=4, subset=64, n_val=16,
                       eval_every=8, device="cpu")
    run = spawn(runs, config)
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", N2N_SERVE_TOKEN="a-test-token")
    server = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--runs-dir", str(runs)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    shot = tmp_path / "dashboard-in-chromium.png"
    try:
        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, timeout=30, every=0.2)

        async def browse():
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.goto(f"http://127.0.0.1:{port}/?token=a-test-token")   # then a cookie
                blank = await page.screenshot()
                # the app draws the launcher (the page's own loading screen first): wait until it holds still
                seen = []
                for _ in range(120):
                    await asyncio.sleep(0.5)
                    seen.append(distinct_colours(await page.screenshot()))
                    if len(seen) >= 6 and len(set(seen[-4:])) == 1 and seen[-1] > seen[0]:
                        break
                await page.mouse.click(640, 400)  # focus the terminal
                await asyncio.sleep(0.5)
                await page.keyboard.press("Control+r")  # the launcher's past runs: the live run, marked
                await asyncio.sleep(2)
                await page.keyboard.press("Enter")  # attach to it: the dashboard, patches in true colour
                for _ in range(40):
                    await asyncio.sleep(0.5)
                    if distinct_colours(await page.screenshot()) > 2000:
                        break
                await page.keyboard.press(" ")  # pause it from the browser
                await asyncio.to_thread(wait_until, lambda: state(runs, run["run"]) == "paused", 30, 0.2)
                await asyncio.sleep(1)
                await page.screenshot(path=str(shot))
                await browser.close()  # the tab goes away ...
                return blank

        blank = asyncio.run(browse())
        assert distinct_colours(shot.read_bytes()) > distinct_colours(blank) + 20  # patches, curves: true colour
        time.sleep(2)
        assert state(runs, run["run"]) == "paused"  # ... and the run is still there, as the tab left it
        copy_to = os.environ.get("N2N_SCREENSHOTS")
        if copy_to:
            shutil.copy(shot, copy_to)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        subprocess.run([sys.executable, "-m", "tui.cli", "ctl", run["run"], "stop", "--runs-dir", str(runs)],
                       capture_output=True, env=env)
        wait_until(lambda: state(runs, run["run"]) == "stopped", timeout=30, every=0.2)
        _wait_gone(run["pid"])


def _wait_gone(pid: int) -> None:
    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] == "Z"
        except OSError:
            return True
    wait_until(gone, timeout=30, every=0.2)


def distinct_colours(png: bytes) -> int:
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB").resize((320, 200))
    return len(im.getcolors(maxcolors=320 * 200))  # distinct colours (getdata is deprecated in Pillow 12)


def test_serve_refuses_a_taken_port_and_warns_beyond_loopback(tmp_path, capsys):
    from tui.commands.serve_cmd import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--runs-dir",
                            str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and f"cannot serve on 127.0.0.1:{port}" in p.stderr
    server = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--host", "0.0.0.0", "--port",
                               str(free_port()), "--runs-dir", str(tmp_path)], stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        line = server.stderr.readline()
        assert "warning" in line and "plain HTTP" in line
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
