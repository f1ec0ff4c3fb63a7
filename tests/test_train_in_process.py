"""``train --in-process``: the run in the dashboard's own process, on a real pseudo-terminal. A signal that kills the
dashboard (the terminal closed: SIGHUP; SIGTERM) stops the run cleanly with its state saved (with a runner, SIGHUP
leaves the run training: test_runner.py); the dashboard draws on the terminal while what C++ code writes to stderr
goes to runner.log."""
from __future__ import annotations

import pytest
from waiting import poll_last_run

from sessions import Store

SMALL = ["--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", "64", "--batch-size", "4",
         "--n-val", "16", "--device", "cpu"]


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_a_dashboard_killed_by_a_signal_stops_its_in_process_run_cleanly(tmp_path, sig):
    import signal

    from terminal import Terminal

    runs = tmp_path / "runs"  # the run in the dashboard's own process (with a runner, SIGHUP leaves it training)
    term = Terminal("train", "--in-process", *SMALL, "--epochs", "500", "--runs-dir", str(runs))
    try:
        poll_last_run(runs, lambda r: r["step"] >= 3)
        term.proc.send_signal(getattr(signal, sig))
        assert term.wait(60) == 128 + getattr(signal, sig)
    finally:
        term.close()
    with Store(runs) as s:
        r = s.get_run("last")
    assert r["state"] == "stopped" and sig in r["message"], (r["state"], r["message"])
    assert (runs / r["id"] / "state.pth").is_file()


def test_the_in_process_dashboard_draws_on_the_terminal_and_cpp_warnings_go_to_the_log(tmp_path):
    """`train --in-process` sends what C++ code writes to stderr into runner.log; the dashboard itself (which
    Textual draws on stderr) must stay on the terminal, not go into the log with a blank screen left behind."""
    from terminal import Terminal

    runs = tmp_path / "runs"
    term = Terminal("train", "--in-process", *SMALL, "--epochs", "500", "--runs-dir", str(runs), cols=100, rows=30)
    try:
        poll_last_run(runs, lambda r: r["step"] >= 3)
        assert term.expect("loss (log scale)", timeout=30), term.text()
        term.send("x")
        assert term.expect("Stop run", timeout=30), term.text()
        term.send("y")
        poll_last_run(runs, lambda r: r["state"] == "stopped")
    finally:
        term.close()
    with Store(runs) as s:
        r = s.get_run("last")
    log = (runs / r["id"] / "runner.log").read_bytes()
    assert b"loss (log scale)" not in log and b"\x1b[" not in log, log[:200]
