"""A viewer never outlives its terminal (issue 23): a dashboard (``train``, ``attach``) or the launcher whose terminal
is closed mid-drawing, on a machine whose every core is busy, is gone within seconds, and the runner it watched
trains on. ``attach --json`` ends when its pipe closes; SIGTERM always ends a viewer.

The stress test (slow: ``-m slow``) closes the terminal at a random moment 50 times; the default suite does it six
times. ``N2N_STRESS_ROUNDS`` overrides the count (to measure another build, run this file from its checkout)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from terminal import Terminal

from engine.config import RunConfig
from sessions import Store
from sessions.launch import spawn

TINY = RunConfig(engine=1, data="sample", noise="poisson", epochs=5000, batch_size=4, subset=64, n_val=16,
                 eval_every=8, device="cpu")
SMALL = ["--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", "64", "--batch-size", "4",
         "--n-val", "16", "--eval-every", "8", "--epochs", "5000", "--device", "cpu"]
GONE_WITHIN = 10.0   # seconds after the terminal closed


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_runner(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)


def steps(runs, run_id) -> int:
    with Store(runs, create=False, readonly=True) as s:
        return s.get_run(run_id, metrics=False, events=False)["step"]


def runner_pids(runs) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"sessions.runner" in cmd and str(runs).encode() in cmd:
            out.append(int(pid))
    return out


@pytest.fixture
def busy_machine():
    """A busy process on every core, as on the server where the hang was found."""
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(len(os.sched_getaffinity(0)))]
    yield
    for h in hogs:
        h.kill()
        h.wait()


def close_terminals_mid_drawing(tmp_path, rounds: int, at_once: int = 3) -> dict:
    """``rounds`` viewers across train, attach and the launcher, their terminals closed at a random moment after
    their first frame; returns counts and the viewers left after GONE_WITHIN seconds."""
    runs = tmp_path / "runs"
    watched = spawn(runs, TINY)
    rng = random.Random(0)
    kinds = ["attach", "train", "launcher"]
    left, started = [], 0
    try:
        for first in range(0, rounds, at_once):
            batch = []
            for i in range(first, min(rounds, first + at_once)):
                kind = kinds[i % 3]
                args = {"attach": ["attach", watched["run"]], "train": ["train", *SMALL],
                        "launcher": []}[kind]
                batch.append((kind, Terminal(*args, "--runs-dir", str(runs), cols=100, rows=30)))
                started += 1
            for kind, term in batch:
                drawn = term.expect("\x1b[", timeout=60)  # its first frame is being drawn
                time.sleep(rng.uniform(0.0, 1.5) if drawn else 0)
                term.hang_up()
            deadline = time.time() + GONE_WITHIN
            for kind, term in batch:
                while alive(term.proc.pid) and time.time() < deadline:
                    time.sleep(0.1)
                if alive(term.proc.pid):
                    left.append((kind, term.proc.pid))
                    term.proc.kill()
                term.proc.wait(10)
        before = steps(runs, watched["run"])
        time.sleep(3)
        training = alive(watched["pid"]) and steps(runs, watched["run"]) > before
    finally:
        for pid in runner_pids(runs):
            stop_runner(pid)
    return {"started": started, "left": left, "runner_trained_on": training}


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs pseudo-terminals")
def test_viewers_whose_terminal_closes_are_gone_within_seconds(tmp_path, busy_machine):
    r = close_terminals_mid_drawing(tmp_path, int(os.environ.get("N2N_STRESS_ROUNDS", 6)))
    print(f"viewers started {r['started']}, left after {GONE_WITHIN:g} s: {len(r['left'])} {r['left']}")
    assert not r["left"] and r["runner_trained_on"], r


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs pseudo-terminals")
def test_fifty_terminals_closed_mid_drawing_under_load_leave_no_viewer(tmp_path, busy_machine):
    r = close_terminals_mid_drawing(tmp_path, int(os.environ.get("N2N_STRESS_ROUNDS", 51)))
    print(f"viewers started {r['started']}, left after {GONE_WITHIN:g} s: {len(r['left'])} {r['left']}")
    assert not r["left"] and r["runner_trained_on"], r


def test_sigterm_always_ends_a_viewer(tmp_path):
    runs = tmp_path / "runs"
    watched = spawn(runs, TINY)
    term = Terminal("attach", watched["run"], "--runs-dir", str(runs))
    try:
        assert term.expect("loss (log scale)", timeout=60)  # the dashboard is up
        term.proc.send_signal(signal.SIGTERM)
        assert term.wait(15) == 128 + signal.SIGTERM
        assert alive(watched["pid"])
    finally:
        term.close()
        stop_runner(watched["pid"])


def test_attach_json_ends_when_its_reader_goes(tmp_path):
    runs = tmp_path / "runs"
    watched = spawn(runs, TINY)
    try:
        p = subprocess.run(f"{sys.executable} -m tui.cli attach {watched['run']} --json --runs-dir {runs} | head -3;"
                           " echo rc=${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                           text=True, timeout=60)
        assert p.stdout.strip().endswith("rc=141") and p.stderr == "", (p.stdout[-300:], p.stderr)
        assert alive(watched["pid"])
    finally:
        stop_runner(watched["pid"])
