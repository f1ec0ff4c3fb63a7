"""What a command says when it cannot do what was asked: one line on stderr, exit status 2, no traceback, nothing
started or written; sizes and numbers past a limit refused before any work, checkpoints that are empty, odd or of the
other engine named as such, an empty or misplaced ``--runs-dir``, no terminal for a dashboard. And output that goes
away (a closed pipe) is a quiet exit, status 141, that stops a headless run cleanly. Real processes where the process
boundary is the point (pipes, exit codes)."""
from __future__ import annotations

import time

import pytest
import torch
from trainer_helpers import cfg

from sessions import Store
from sessions.store import RunBatch

torch.set_num_threads(1)

SMALL = ["--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", "64", "--batch-size", "4",
         "--n-val", "16", "--device", "cpu"]


def _run_cli(*args, env_extra=None, timeout=120, shell_pipe=None):
    import os
    import shlex
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("N2N_RUNS_DIR", None)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "tui.cli", *args]
    if shell_pipe:
        line = " ".join(shlex.quote(c) for c in cmd) + f" | {shell_pipe} >/dev/null; echo rc=${{PIPESTATUS[0]}}"
        return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=timeout, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


# ------------------------------------------------------------------------------------ bad input, bad files

@pytest.mark.parametrize("argv, needle", [
    (["eval", "--engine", "1", "--n-val", "100000000000"], "--n-val: expected a positive integer up to 10,000,000"),
    (["train", "--headless", "--subset", "100000000000"], "--subset: expected a positive integer up to"),
    (["data", "make", "--out", "OUT", "--n-train", "100000000000"], "--n-train: expected a positive integer up to"),
    (["train", "--headless", "--subset", "9000000"], "subset: 9,000,000 pairs need about"),
    (["data", "make", "--out", "OUT", "--n-train", "9000000"], "--n-train 9000000: 9,000,000 pairs need about"),
    (["eval", "--engine", "1", "--n-val", "9000000", "--data", "sample"], "--n-val 9000000: 9,000,000 pairs need"),
])
def test_huge_sizes_are_refused_up_front(argv, needle, tmp_path):
    p = _run_cli(*[a.replace("OUT", str(tmp_path / "o")) for a in argv], "--runs-dir", str(tmp_path / "runs")) \
        if argv[0] == "train" else _run_cli(*[a.replace("OUT", str(tmp_path / "o")) for a in argv])
    assert p.returncode == 2 and needle in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_empty_or_odd_checkpoints_are_one_line_errors(trained_run, tmp_path, capsys):
    from tui.cli import main

    runs, run, _ = trained_run
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    odd = tmp_path / "odd.pth"
    torch.save({"format": "n2n-tui/miniproject1", "config": "widths=8,16", "model": {}}, odd)
    data = tmp_path / "data"
    assert main(["data", "make", "--out", str(data), "--n-train", "4", "--n-val", "4"]) == 0
    capsys.readouterr()
    for weights, needle in ((empty, "an empty file"), (odd, "config is a str")):
        assert main(["eval", "--engine", "1", "--weights", str(weights), "--data", f"course:{data}"]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    (runs / run / "best.pth").write_bytes(b"")
    (runs / run / "best.json").unlink()
    assert main(["export", run, "--to", str(tmp_path / "m.pth"), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "an empty file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.pth").exists()


def test_weights_and_option_errors_name_the_problem(tmp_path, capsys):
    import pickle

    from tui.cli import main

    data = tmp_path / "data"
    assert main(["data", "make", "--out", str(data), "--n-train", "4", "--n-val", "4"]) == 0
    capsys.readouterr()
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(pickle.dumps({"x": object}))
    bad_loss = tmp_path / "l7.pth"
    torch.save({"format": "n2n-tui/miniproject1", "config": {"widths": [8, 16], "loss": "l7"}, "model": {}}, bad_loss)
    no_config = tmp_path / "nocfg.pth"
    torch.save({"format": "n2n-tui/miniproject1", "model": {}}, no_config)
    from engine.models import bestmodel_path

    cases = [(["--engine", "1", "--weights", str(bestmodel_path(2))], "a plain pickle, not a PyTorch zip file"),
             (["--engine", "2", "--weights", str(bestmodel_path(1))], "holds Miniproject_1 weights"),
             (["--engine", "1", "--weights", str(garbage)], "a plain pickle"),
             (["--engine", "1", "--weights", str(bad_loss)], "unknown loss 'l7'"),
             (["--engine", "1", "--weights", str(no_config)], "has no config")]
    for args, needle in cases:
        assert main(["eval", *args, "--data", f"course:{data}"]) == 2
        err = capsys.readouterr().err
        assert needle in err and "PyTorch 2.6" not in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):
        main(["train", "--lr", "-inf"])
    err = capsys.readouterr().err
    assert "--lr: expected a positive number, got '-inf'" in err and "expected one argument" not in err


def test_an_empty_runs_dir_means_the_default_everywhere(tmp_path, capsys, monkeypatch):
    from tui.cli import main
    from tui.parser import build_parser

    monkeypatch.setenv("N2N_RUNS_DIR", "")
    for cmd in (["train"], ["runs"], ["show", "last"], ["export", "last"]):
        assert build_parser().parse_args(cmd).runs_dir == "runs", cmd
    with pytest.raises(SystemExit):
        main(["runs", "--runs-dir", ""])
    assert "--runs-dir: empty path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "last", "--to", ""])
    assert "--to: empty path" in capsys.readouterr().err


def test_runs_dir_before_the_command_is_the_one_used():
    """``n2n-tui --runs-dir DIR runs`` once read ./runs: the command's own default replaced the earlier value."""
    from tui.parser import build_parser

    for cmd in (["runs"], ["show", "last"], ["attach"], ["ctl", "last", "stop"], ["train"], ["sweeps"]):
        assert build_parser().parse_args(["--runs-dir", "elsewhere", *cmd]).runs_dir == "elsewhere", cmd
        assert build_parser().parse_args(["--runs-dir", "a", *cmd, "--runs-dir", "b"]).runs_dir == "b", cmd


# ------------------------------------------------------------------------------------------------ no terminal

def test_the_dashboard_without_a_terminal_says_so(tmp_path):
    import subprocess
    import sys

    for args in (["train", *SMALL], []):
        p = subprocess.run([sys.executable, "-m", "tui.cli", *args, "--runs-dir", str(tmp_path)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "needs a terminal" in p.stderr and p.stdout == "", (p.returncode, p.stderr)
    assert not (tmp_path / "sessions.sqlite").exists()  # nothing was started


# ------------------------------------------------------------------------------------------- a closed pipe

def test_a_closed_pipe_is_a_quiet_exit(tmp_path):
    runs = tmp_path / "runs"
    with Store(runs) as s:
        run = s.new_run(cfg())
        s.write_batch(run, RunBatch(events=[(run, time.time(), "note", "x" * 60, i) for i in range(20000)]))
        s.set_state(run, "stopped")
        for _ in range(600):
            s.set_state(s.new_run(cfg()), "stopped")
    for args, pipe in ((["runs"], "head -1"), (["show", run], "head -1"), (["show", run, "--json"], "head -c 10")):
        p = _run_cli(*args, "--runs-dir", str(runs), shell_pipe=pipe)
        assert p.stderr == "", p.stderr
        assert p.stdout.strip() == "rc=141", (args, p.stdout)


def test_headless_output_closed_stops_the_run_cleanly(tmp_path):
    p = _run_cli("train", "--headless", *SMALL, "--epochs", "50", "--eval-every", "2", "--runs-dir",
                 str(tmp_path), shell_pipe="head -1")
    assert p.stdout.strip() == "rc=141" and p.stderr == "", (p.stdout, p.stderr)
    with Store(tmp_path) as s:
        r = s.get_run("last")
    assert r["state"] == "stopped" and r["message"] == "output closed"
