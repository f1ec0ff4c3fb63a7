"""Runs that outlive the terminal: a real runner process and its control socket, real viewers (``RemoteRun``, raw
sockets, the dashboard on a pseudo-terminal), real signals. Each runner trains a tiny network on a few pairs."""
from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
import torch
from waiting import poll_last_run, wait_until

from engine.config import RunConfig
from sessions import Store
from sessions.launch import spawn
from sessions.protocol import socket_path
from sessions.remote import ControlError, RemoteRun
from sessions.server import ControlServer

torch.set_num_threads(1)

TINY = RunConfig(engine=1, data="sample", noise="poisson", epochs=2000, batch_size=4, subset=64, n_val=16,
                 eval_every=8, device="cpu")


class Log(list):
    def __call__(self, ev):
        self.append(ev)

    def of(self, kind):
        return [e for e in list(self) if e.kind == kind]


@pytest.fixture
def runner(tmp_path):
    """A live runner of TINY in tmp_path/runs: (runs_dir, run_id, pid). Stopped (SIGKILL if need be) afterwards."""
    runs = tmp_path / "runs"
    started = spawn(runs, TINY)
    yield runs, started["run"], started["pid"]
    try:
        os.kill(started["pid"], signal.SIGKILL)
        wait_until(lambda: not pid_alive(started["pid"]), timeout=10)
    except ProcessLookupError:
        pass


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def raw_exchange(run_dir, payload: bytes, replies: int = 1, timeout=20.0) -> list[dict]:
    """Send raw bytes on the control socket; return the reply lines (skipping hello and events)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(socket_path(run_dir)))
    f = s.makefile("rb")
    s.sendall(payload)
    out = []
    while len(out) < replies:
        d = json.loads(f.readline())
        if "reply" in d:
            out.append(d)
    s.close()
    return out


def test_a_runner_is_watched_and_steered_through_its_socket(runner, tmp_path):
    runs, run_id, pid = runner
    with Store(runs, create=False, readonly=True) as s:
        r = s.get_run(run_id, metrics=False, events=False)
        run_dir = s.run_dir(run_id)
    assert r["state"] == "running" and r["pid"] == pid
    assert socket_path(run_dir).stat().st_mode & 0o777 == 0o600

    a, b = RemoteRun(run_dir), RemoteRun(run_dir)  # two viewers at once
    log_a, log_b = Log(), Log()
    a.add_sink(log_a)
    b.add_sink(log_b)
    a.start()
    b.start()
    assert a.run_id == run_id and a.config.engine == 1 and a.pid == pid
    wait_until(lambda: len(log_a.of("step")) >= 5 and len(log_b.of("step")) >= 5)
    wait_until(lambda: log_a.of("eval") and log_a.of("eval")[-1].noisy is not None)  # patches travel too
    assert log_a.of("eval")[-1].noisy.shape == (6, 3, 32, 32) or log_a.of("eval")[-1].noisy.shape[0] >= 1

    a.pause()
    wait_until(lambda: a.state == "paused" and b.state == "paused")
    frozen = a.step
    a.set_hyperparameter("lr", 5e-4)
    wait_until(lambda: b.lr == 5e-4)  # the other viewer sees the change too
    with pytest.raises(ValueError, match=r"lr must be in \(0, 10\], got -1"):  # the runner's Model checks it
        a.set_hyperparameter("lr", -1)
    # malformed, oversized and unknown messages: an error reply each, the run untouched
    replies = raw_exchange(run_dir, b"this is not json\n" + b'{"id": 7, "cmd": "explode"}\n'
                           + b'{"id": 8, "cmd": "set", "name": "lr", "value": "fast"}\n' + b"x" * (70 * 1024) + b"\n",
                           replies=4)
    assert [d["ok"] for d in replies] == [False] * 4
    assert replies[0]["error"] == "malformed message: not valid JSON" and replies[1]["reply"] == 7
    assert "unknown command" in replies[1]["error"] and "must be a number" in replies[2]["error"]
    assert "over 65536 bytes" in replies[3]["error"]
    time.sleep(0.5)
    assert a.step == frozen and a.state == "paused" and a.lr == 5e-4

    # a viewer killed mid-stream: the run does not notice
    b.close()
    with Store(runs, create=False, readonly=True) as s:
        assert s.get_run(run_id, metrics=False, events=False)["lr"] == 5e-4  # runs --json shows the live lr

    a.resume()
    wait_until(lambda: a.step > frozen + 3)
    wait_until(lambda: (a.best_step or 0) > 0)  # an export needs weights better than the noisy input
    target = tmp_path / "bestmodel.pth"
    result = a.export(target)
    assert target.is_file() and result["path"] == str(target) and result["run"] == run_id
    a.stop()
    wait_until(lambda: a.state == "stopped")
    wait_until(lambda: not pid_alive(pid), timeout=30)
    assert not socket_path(run_dir).exists()
    with Store(runs) as s:
        r = s.get_run(run_id)
    assert r["state"] == "stopped" and r["lr"] == 5e-4
    kinds = [e["kind"] for e in r["events"]]
    assert {"pause", "lr", "resume", "export", "stop"} <= set(kinds)
    assert (run_dir / "runner.log").read_text().count("serving run") == 1


def test_ctl_and_attach_json_from_a_shell(runner, tmp_path, capsys):
    from tui.cli import main

    runs, run_id, pid = runner
    assert main(["ctl", run_id[:12], "pause", "--runs-dir", str(runs)]) == 0
    assert "pause sent" in capsys.readouterr().out
    assert main(["ctl", run_id, "lr", "0.002", "--runs-dir", str(runs)]) == 0
    assert main(["ctl", run_id, "lr", "-3", "--runs-dir", str(runs)]) == 2
    assert "lr must be in (0, 10], got -3" in capsys.readouterr().err  # the runner's Model says why
    def status():
        assert main(["ctl", run_id, "status", "--json", "--runs-dir", str(runs)]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    wait_until(lambda: status()["state"] == "paused", every=0.3)  # it pauses once its data is loaded
    assert status()["lr"] == 0.002 and status()["pid"] == pid
    # a person gets a summary, one labelled line per subject; scripts ask for --json
    assert main(["ctl", run_id, "status", "--runs-dir", str(runs)]) == 0
    said = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in said.strip().splitlines())
    assert lines["run"].startswith(run_id) and lines["state"] == "paused" and lines["lr"] == "0.002"
    assert lines["device"] == f"cpu  pid {pid}" and lines["step"].startswith(tuple("0123456789"))
    assert "lr 0.002" in lines["settings"] and "batch_size 4" in lines["settings"] and "{" not in said
    assert main(["ctl", run_id, "pause", "extra", "--runs-dir", str(runs)]) == 2
    assert "takes no value" in capsys.readouterr().err

    import subprocess
    import sys

    follower = subprocess.Popen([sys.executable, "-m", "tui.cli", "attach", "--json", "--runs-dir", str(runs)],
                                stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert main(["ctl", run_id, "resume", "--runs-dir", str(runs)]) == 0
        wait_until(lambda: _steps_seen(runs, run_id) >= 10)
        assert main(["ctl", run_id, "stop", "--runs-dir", str(runs)]) == 0
        out, _ = follower.communicate(timeout=60)
    finally:
        follower.kill()
    lines = [json.loads(x) for x in out.splitlines()]
    kinds = [d["event"] for d in lines]
    assert "step" in kinds and lines[-1] == {**lines[-1], "event": "state", "state": "stopped"}
    assert lines[-1]["message"].startswith("stopped by n2n-tui ctl (pid ")  # who stopped it, in the run's record
    assert all(d["run"] == run_id for d in lines) and all("noisy" not in d for d in lines)  # like train --json
    wait_until(lambda: not pid_alive(pid), timeout=30)
    assert main(["ctl", run_id, "pause", "--runs-dir", str(runs)]) == 2
    assert "is stopped, not live" in capsys.readouterr().err
    assert main(["attach", "--json", "--runs-dir", str(runs)]) == 2
    assert "no live run" in capsys.readouterr().err


def _steps_seen(runs, run_id) -> int:
    with Store(runs, create=False, readonly=True) as s:
        return s.get_run(run_id, metrics=False, events=False)["step"]


def test_a_connection_from_another_user_is_refused(runner):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    runs, run_id, pid = runner
    path = socket_path(Store(runs, create=False, readonly=True).run_dir(run_id))
    os.chmod(path, 0o666)  # even a socket made writable by others: the kernel's peer credentials decide
    os.chmod(path.parent, 0o755)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the other user
        try:
            os.close(r)
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)  # the tmp folders above are root's only
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(f"/proc/self/fd/{folder}/{path.name}")
            data = s.makefile("rb").readline()
            os.write(w, data or b"EOF\n")
        except BaseException as e:  # noqa: BLE001  (report anything to the parent)
            os.write(w, f"ERROR {e}\n".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    with os.fdopen(r, "rb") as f:
        got = f.read().decode()
    d = json.loads(got)
    assert d["event"] == "refused" and "another user" in d["error"], got
    assert pid_alive(pid)


def test_a_sigkilled_runner_reads_crashed_and_resumes(runner, tmp_path):
    runs, run_id, pid = runner
    wait_until(lambda: _steps_seen(runs, run_id) >= 3)
    run_dir = runs / run_id
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout=30)
    assert socket_path(run_dir).exists()  # what the dead runner left
    with pytest.raises(ControlError, match="not live"):
        RemoteRun(run_dir)
    def state():  # its threads may hold the run's lock a moment longer than the main one lives
        with Store(runs) as s:
            return s.get_run(run_id)

    wait_until(lambda: state()["state"] == "crashed", timeout=10)
    assert state()["events"][-1]["kind"] == "crashed"
    assert not socket_path(run_dir).exists()  # cleaned up with the crash
    again = spawn(runs, resume=run_id)
    try:
        assert again["run"] == run_id
        with pytest.raises(Exception, match="in another process"):  # two runners never train the same run
            spawn(runs, resume=run_id)
        handle = RemoteRun(run_dir)
        assert handle.state in ("idle", "running")
        handle.stop()
        handle.close()
        wait_until(lambda: not pid_alive(again["pid"]), timeout=30)
    finally:
        try:
            os.kill(again["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    with Store(runs) as s:
        assert s.get_run(run_id)["state"] == "stopped"


def test_sighup_to_a_dashboard_leaves_the_run_training_to_the_end(tmp_path):
    from terminal import Terminal

    runs = tmp_path / "runs"
    term = Terminal("train", "--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", "64",
                    "--batch-size", "4", "--n-val", "16", "--epochs", "3", "--device", "cpu", "--runs-dir", str(runs))
    try:
        wait_until(lambda: (runs / "sessions.sqlite").exists() and _steps_seen_last(runs) >= 3)
        term.proc.send_signal(signal.SIGHUP)  # the terminal closed, the SSH connection dropped
        term.wait(30)
    finally:
        term.close()
    with Store(runs, create=False, readonly=True) as s:
        assert s.list_runs()[-1]["state"] == "running"  # the viewer is gone, the run is not
    wait_until(lambda: _last(runs)["state"] == "finished", timeout=120)
    assert _last(runs)["step"] == 48
    wait_until(lambda: not pid_alive(_last(runs)["pid"]), timeout=30)  # and the runner has left


def _last(runs) -> dict:
    with Store(runs, create=False, readonly=True) as s:
        return s.list_runs()[-1]


def _steps_seen_last(runs) -> int:
    rows = Store(runs, create=False, readonly=True).list_runs()
    return rows[-1]["step"] if rows else 0


# ------------------------------------------------------------------------------------- the server on its own

class FakeHandler:
    def status(self):
        return {"run": "r1", "config": RunConfig().to_dict(), "state": "running", "step": 0}

    def command(self, msg):
        if msg["cmd"] == "save":
            raise ValueError("nothing to save yet")
        return {"cmd": msg["cmd"]}


def test_a_viewer_that_connects_after_the_run_ended_is_told_so(tmp_path):
    """A runner that failed before the viewer's hello (its data did not load, on a loaded machine) still serves its
    socket for a moment: the viewer must hear the end from the hello, or the dashboard waits on a run that is over
    (seen once in CI as a dashboard that would not quit)."""
    class Failed(FakeHandler):
        def status(self):
            return {**super().status(), "state": "failed", "message": "imgs: no PNG/JPEG/TIFF images"}

    server = ControlServer(tmp_path, Failed()).start()
    try:
        viewer = RemoteRun(tmp_path)
        got = Log()
        viewer.add_sink(got)
        viewer.start()
        wait_until(lambda: got.of("state"))
        (end,) = got.of("state")
        assert (end.state, end.message) == ("failed", "imgs: no PNG/JPEG/TIFF images")
        viewer.close()
    finally:
        server.close()


def test_a_run_that_ends_before_its_dashboard_attaches_says_how(tmp_path, monkeypatch):
    """On a busy machine the runner can fail (its data would not load) and close its socket before the dashboard
    connects: seen in CI as "the runner did not say hello", exit 2. The real runner and socket; only the viewer's
    connection is held back until the runner is gone."""
    import sessions.launch as launch
    from tui.parser import build_parser
    from tui.run_args import start_from_args

    runs, images = tmp_path / "runs", tmp_path / "imgs"
    images.mkdir()
    real_attach = launch.attach_run

    def late_attach(runs_dir, run_id):
        poll_last_run(runs, lambda r: r["state"] == "failed", timeout=60)
        wait_until(lambda: not (runs / run_id / "control.sock").exists(), timeout=30)
        return real_attach(runs_dir, run_id)

    monkeypatch.setattr(launch, "attach_run", late_attach)
    args = build_parser().parse_args(["train", "--data", f"images:{images}", "--runs-dir", str(runs)])
    with pytest.raises(launch.RunEnded, match=r"run \S+ failed: .*imgs") as e:
        start_from_args(args)
    assert e.value.status == 1
    _wait_runner_gone(runs)


def _wait_runner_gone(runs, timeout=60.0):
    """A failed run's runner exits just after closing its socket; on a loaded machine that can take seconds (a
    zombie until reaped counts as gone)."""
    pid = poll_last_run(runs, lambda r: True)["pid"]

    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] == "Z"
        except OSError:
            return True

    wait_until(gone, timeout=timeout)


def test_a_run_that_fails_in_the_dashboard_exits_1(tmp_path):
    from terminal import Terminal

    runs = tmp_path / "runs"
    images = tmp_path / "imgs"  # exists, so the up-front check passes; the trainer's own load then fails
    images.mkdir()
    term = Terminal("train", "--data", f"images:{images}", "--runs-dir", str(runs))
    try:
        poll_last_run(runs, lambda r: r["state"] == "failed", timeout=60)
        # the dashboard shows it even when its viewer connected only after the runner had failed (a loaded machine)
        assert term.expect("failed", timeout=30), term.text()
        term.send("q")
        try:
            rc = term.wait(30)
        except Exception:
            raise AssertionError(f"the dashboard did not exit after q: {term.text()}") from None
        assert rc == 1
        _wait_runner_gone(runs)
    finally:
        term.close()


def test_a_stalled_viewer_never_blocks_the_run_and_is_resynced(tmp_path, monkeypatch):
    """A viewer that stops reading: publishing stays instant, its queue stays bounded, and when it reads again it
    is told to reload from the store (a resync hello)."""
    import sessions.server as control
    from engine.events import StepEvent
    from sessions.remote import connect

    # a small bound, so the stalled viewer (30 000 steps, ~1.5 MB) overflows it, with room for the reading follower's
    # bursts on a slow machine (at 64 KB, one CI run resynced the follower too)
    monkeypatch.setattr(control, "QUEUE_BYTES", 256 * 1024)
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # longer than a Unix socket path may be
    deep.mkdir(parents=True)
    server = control.ControlServer(deep, FakeHandler()).start()
    try:
        stalled = connect(deep)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        follower = RemoteRun(deep)
        got = Log()
        follower.add_sink(got)
        follower.start()
        wait_until(lambda: server.viewers == 2)
        t0 = time.perf_counter()
        for i in range(1, 30001):
            server.publish(StepEvent("r1", i, 1, 0.1, 1e-3, 100.0, 30000))
            if i % 1000 == 0:
                time.sleep(0.02)
        took = time.perf_counter() - t0
        assert took < 5.0, took  # ~10 us a step even with a viewer that reads nothing
        wait_until(lambda: len(got.of("step")) == 30000)  # the live follower missed nothing
        assert [e.step for e in got.of("step")] == list(range(1, 30001))
        viewer = next(v for v in server._viewers if v.resyncs)  # the stalled one, not the follower
        assert viewer.size <= control.QUEUE_BYTES + 400 * 1024  # at most one batch over the bound
        f = stalled.makefile("rb")
        lines = [json.loads(f.readline()) for _ in range(2)]
        assert lines[0]["event"] == "hello" and not lines[0]["resync"]
        found = False
        for _ in range(2000):  # somewhere in what it reads now: the resync hello
            d = json.loads(f.readline())
            if d.get("event") == "hello":
                found = d["resync"]
                break
        assert found
        with pytest.raises(ControlError, match="nothing to save"):
            follower.call("save", timeout=5)
        stalled.close()
        follower.close()
    finally:
        server.close()
    assert not (deep / "control.sock").exists()


def test_every_dashboard_key_works_on_an_attached_run(runner, tmp_path):
    import asyncio

    from fakes import train_args
    from waiting import wait_for

    from sessions.launch import attach_run
    from tui.app import N2NApp
    from tui.screens import DashboardScreen, LrScreen, QuitScreen
    from tui.widgets import EventLog, LossPlot, PsnrPlot, SamplePatches

    runs, run_id, pid = runner
    wait_until(lambda: _steps_seen(runs, run_id) >= 12)
    handle, store = attach_run(runs, run_id)
    target = tmp_path / "bestmodel.pth"

    async def go():
        app = N2NApp(train_args(runs_dir=str(runs), export_to=str(target)), store=store, trainer=handle)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, DashboardScreen) and screen.trainer.lives_on
            # backfilled from the store: the curve from step 1, the evaluations, the latest patches
            assert screen.query_one(LossPlot).n_points >= 12 and screen.query_one(PsnrPlot).n_points >= 1
            assert screen.query_one(SamplePatches).has_samples
            # ... and the event log lists the evaluations that happened before the attach, as the live log does
            log = screen.query_one(EventLog).entries
            assert any(e.split()[:2] == ["0", "eval"] and e.endswith("★ best") for e in log), log  # step 0's
            await pilot.press("space")
            assert await wait_for(pilot, lambda: handle.state == "paused", timeout=20)
            frozen = handle.step
            await pilot.press("right_square_bracket")
            assert await wait_for(pilot, lambda: handle.lr == pytest.approx(2e-3), timeout=20)
            await pilot.press("l")
            assert isinstance(app.screen, LrScreen)
            app.screen.query_one("#lr-input").value = "7e-4"
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: handle.lr == pytest.approx(7e-4), timeout=20)
            await pilot.press("s")
            assert await wait_for(pilot, lambda: target.is_file(), timeout=60)
            await pilot.press("space")
            assert await wait_for(pilot, lambda: handle.step > frozen + 2, timeout=30)
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            await pilot.press("escape")
            assert isinstance(app.screen, DashboardScreen)
            await pilot.press("q", "d")
            assert await wait_for(pilot, lambda: not app.is_running, timeout=20)
        return app

    app = asyncio.run(go())
    assert app.return_code == 0
    time.sleep(1.0)
    assert pid_alive(pid)
    with Store(runs, create=False, readonly=True) as s:
        r = s.get_run(run_id)
    assert r["state"] == "running" and r["lr"] == pytest.approx(7e-4)  # detached: it trains on
    assert {"pause", "resume", "lr", "export", "detach"} <= {e["kind"] for e in r["events"]}


def test_the_launcher_marks_live_runs_and_enter_attaches(runner, tmp_path):
    import asyncio

    from fakes import train_args
    from waiting import wait_for

    from tui.app import N2NApp
    from tui.screens import DashboardScreen, LauncherScreen, RunsScreen
    from tui.widgets import RunsTable
    from tui.widgets.runs_table import COLUMNS

    runs, run_id, pid = runner
    with Store(runs) as s:  # a finished run beside the live one
        done = s.new_run(TINY)
        s.set_state(done, "finished")

    async def go():
        app = N2NApp(train_args(runs_dir=str(runs)), store=Store(runs))
        async with app.run_test(size=(100, 30)) as pilot:
            assert isinstance(app.screen, LauncherScreen)
            await pilot.press("ctrl+r")
            assert isinstance(app.screen, RunsScreen)
            table = app.screen.query_one(RunsTable)
            state = COLUMNS.index("state")
            cells = {table.get_row(rid)[1]: str(table.get_row(rid)[state]) for rid in (run_id, done)}
            assert "live" in cells[run_id] and "live" not in cells[done]
            table.move_cursor(row=table.get_row_index(run_id))
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=20)
            assert app.screen.run_id == run_id and app.screen.trainer.lives_on
            assert await wait_for(pilot, lambda: app.trainer.step > 0, timeout=30)
            await pilot.press("q", "d")
            assert await wait_for(pilot, lambda: not app.is_running, timeout=20)

    asyncio.run(go())
    assert pid_alive(pid)


VIEWER_WITHOUT_TORCH = r'''
import asyncio, importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("a viewer imported torch")

sys.meta_path.insert(0, NoTorch())
runs, run_id = sys.argv[1], sys.argv[2]

from tui.app import N2NApp
from tui.cli import main
from sessions.launch import attach_run
from tui.parser import build_parser
from tui.screens import DashboardScreen, ZoomScreen
from tui.widgets import LossPlot, SamplePatches, ZoomView
from waiting import wait_for

assert main(["--runs-dir", runs, "ctl", run_id, "status"]) == 0
# starting a run is a viewer's job too: the runner it spawns imports torch, this process does not
assert main(["--runs-dir", runs, "train", "--detach", "--engine", "1", "--subset", "64", "--n-val", "16",
             "--epochs", "100"]) == 0
from sessions.launch import live_run
started = live_run(runs, None)
assert started["id"] != run_id and main(["--runs-dir", runs, "ctl", started["id"], "stop"]) == 0
print("started", started["pid"])

async def go():
    handle, store = attach_run(runs, run_id)
    args = build_parser().parse_args(["--runs-dir", runs, "attach", run_id])
    app = N2NApp(args, store=store, trainer=handle)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert screen.query_one(LossPlot).n_points >= 12 and screen.query_one(SamplePatches).has_samples
        await pilot.press("z")  # the zoom: every sample of every evaluation, with its PSNR
        assert isinstance(app.screen, ZoomScreen)
        assert await wait_for(pilot, lambda: app.screen.query_one(ZoomView).per_row, 20)  # drawn
        await pilot.press("up", "right", "escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("space")
        assert await wait_for(pilot, lambda: handle.state == "paused", timeout=20)
        await pilot.press("q", "d")
        assert await wait_for(pilot, lambda: not app.is_running, timeout=20)
    return app.return_code

assert asyncio.run(go()) == 0
assert "torch" not in sys.modules
print("viewed without torch")
'''


def test_a_viewer_never_imports_torch(runner):
    """Attaching is fast because a viewer loads no torch (about 1 s of start-up): the dashboard with its backfilled
    curves, patches and zoom, ``ctl`` and ``train --detach``, all in a process where importing torch fails."""
    import subprocess
    import sys

    runs, run_id, _ = runner
    wait_until(lambda: _steps_seen(runs, run_id) >= 12)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.path.dirname(tests)])}
    done = subprocess.run([sys.executable, "-c", VIEWER_WITHOUT_TORCH, str(runs), run_id], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "viewed without torch" in done.stdout, done.stdout + done.stderr
    pid = int(done.stdout.split("started ")[1].split()[0])
    wait_until(lambda: not pid_alive(pid), timeout=30)  # the run it started and stopped: its runner has ended


def test_a_viewer_stopped_until_after_the_run_ended_is_told_how_it_ended(tmp_path):
    """A viewer that reads nothing for a while (SIGSTOP) misses the end of the stream: the runner closes its socket
    before it could send the final state. It must still end saying `finished`, like the viewers that kept reading,
    not `disconnected`."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    cfg = RunConfig(engine=1, data="sample", noise="poisson", epochs=30, batch_size=4, subset=64, n_val=16,
                    eval_every=4, device="cpu")  # ~500 steps and ~120 evaluations with patches: megabytes of events
    started = spawn(runs, cfg)
    cmd = [sys.executable, "-m", "tui.cli", "attach", started["run"], "--json", "--runs-dir", str(runs)]
    readers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    stalled = readers[1]
    try:
        # both are attached (each has printed its first event) before one is stopped: on a loaded machine a viewer
        # still starting after a fixed wait could be stopped before it attached and find the run over
        first = [p.stdout.readline() for p in readers]
        assert all(first), "a viewer ended before it attached"
        time.sleep(0.5)
        stalled.send_signal(signal.SIGSTOP)
        wait_until(lambda: not pid_alive(started["pid"]), timeout=240)
        stalled.send_signal(signal.SIGCONT)
        endings = []
        for p, line in zip(readers, first):
            out, _ = p.communicate(timeout=60)
            last = json.loads((line + out).strip().splitlines()[-1])
            endings.append((last["event"], last.get("state"), p.returncode))
    finally:
        for p in readers:
            p.kill()
    assert endings == [("state", "finished", 0)] * 2, endings


def test_a_live_run_stays_reachable_when_the_store_loses_it(runner, capsys):
    """`rm runs/sessions.sqlite-wal` under a live run: the store no longer knows it, its socket still answers, so
    `runs` lists it, `ctl` reaches it and stops it."""
    from tui.cli import main

    runs, run_id, pid = runner
    wait_until(lambda: _steps_seen(runs, run_id) > 0)
    for f in (runs / "sessions.sqlite-wal", runs / "sessions.sqlite-shm"):
        f.unlink()
    (runs / "sessions.sqlite").write_bytes(b"")  # and the main file holds nothing of it either
    assert main(["runs", "--runs-dir", str(runs)]) in (0, 2)
    capsys.readouterr()
    assert main(["ctl", run_id, "status", "--json", "--runs-dir", str(runs)]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == run_id
    assert main(["ctl", "last", "stop", "--runs-dir", str(runs)]) == 0
    wait_until(lambda: not pid_alive(pid), timeout=60)


def test_odd_commands_on_the_socket_get_a_one_line_reason(runner):
    """Whatever a viewer sends, the answer is one line that says what is wrong, never an internal error's name:
    a save into /proc or onto a device, JSON nested 20 000 deep, an id that is not a number or a string, a number
    of 5 000 digits."""
    import sessions.remote as control

    runs, run_id, pid = runner
    wait_until(lambda: _steps_seen(runs, run_id) > 0)
    sock = control.connect(runs / run_id)
    f = sock.makefile("rb")
    assert json.loads(f.readline())["event"] == "hello"

    def ask(raw: bytes) -> dict:
        sock.sendall(raw + b"\n")
        while True:
            d = json.loads(f.readline())
            if "reply" in d:
                return d

    r = ask(json.dumps({"id": 1, "cmd": "save", "path": "/proc/self/mem"}).encode())
    assert r["reply"] == 1 and not r["ok"] and "a kernel interface" in r["error"], r
    r = ask(json.dumps({"id": 2, "cmd": "save", "path": "/dev/null"}).encode())
    assert not r["ok"] and r["error"].startswith("/dev/null: is a character device"), r
    r = ask(b"[" * 20000 + b"]" * 20000)
    assert not r["ok"] and r["error"] == "malformed message: nested too deeply", r
    r = ask(b'{"id": {"a": 1}, "cmd": "status"}')
    assert r["reply"] is None and not r["ok"] and '"id" must be a number or a string' in r["error"], r
    r = ask(b'{"id": 3, "cmd": "set", "name": "lr", "value": ' + b"1" * 5000 + b"}")
    assert not r["ok"] and r["error"] == "malformed message: a number too long", r
    assert ask(b'{"id": 4, "cmd": "status"}')["ok"]  # and the connection still works
    sock.close()
