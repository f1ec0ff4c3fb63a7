"""``n2n-tui train --headless``: JSON lines that parse, the rich progress output, Ctrl-C and SIGHUP, and exit status 2
with one line for every bad option (numbers past their limits too). Real subprocesses where the process boundary
matters (signals, exit codes)."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import torch
from trainer_helpers import cfg
from waiting import poll_last_run

from engine.config import RunConfig
from sessions import Store
from tui.cli import main

torch.set_num_threads(1)

SMALL = ["--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", "32", "--batch-size", "4",
         "--n-val", "16", "--device", "cpu"]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("N2N_RUNS_DIR", None)
    return e


def cli(*args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env())


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())


def read_until(proc, pred, timeout=120.0) -> list[dict]:
    """JSON lines of ``proc`` until ``pred(line)`` holds for one."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not ready:
            continue
        raw = proc.stdout.readline()
        if not raw:
            raise AssertionError(f"process ended early: {proc.stderr.read()[-2000:]}")
        lines.append(json.loads(raw))
        if pred(lines[-1]):
            return lines
    raise AssertionError("timed out waiting for a line")


def test_headless_json_lines_parse_while_a_viewer_reads_the_store(tmp_path):
    """One real run: its --json lines parse, and a second process's view of the store follows it meanwhile."""
    from sessions import Store

    # --json alone implies --headless
    proc = popen("train", *SMALL, "--epochs", "2", "--eval-every", "4", "--json", "--runs-dir", str(tmp_path))
    seen, errors = [], []
    try:
        lines = read_until(proc, lambda d: True)
        run = lines[0]["run"]
        while proc.poll() is None:
            try:
                with Store(tmp_path, create=False) as s:
                    r = s.get_run(run)
                    s.list_runs()
                seen.append((r["state"], r["step"]))
            except Exception as e:  # noqa: BLE001 - any error is a failure: collect and report it
                errors.append(repr(e))
            time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert not errors, errors[:3]
    lines += [json.loads(line) for line in out.splitlines()]
    first, last = lines[0], lines[-1]
    assert first["event"] == "state" and first["state"] == "running" and first["run"]
    assert last == {**last, "event": "state", "state": "finished", "run": run}
    steps = [d for d in lines if d["event"] == "step"]
    assert [d["step"] for d in steps] == list(range(1, 17))
    assert all({"step", "epoch", "loss", "lr", "img_per_s"} <= set(d) for d in steps)
    evals = [d for d in lines if d["event"] == "eval"]
    assert [d["step"] for d in evals] == [0, 4, 8, 12, 16] and all(isinstance(d["psnr"], float) for d in evals)
    saved = [d for d in lines if d["event"] == "saved"]
    assert saved and all({"path", "psnr"} <= set(d) for d in saved)
    assert (tmp_path / run / "best.pth").is_file()
    # the viewer watched it progress; the store holds every step's loss and every eval's PSNR
    assert any(state == "running" for state, _ in seen)
    watched = [step for _, step in seen]
    assert watched == sorted(watched) and len(set(watched)) > 2
    with Store(tmp_path) as s:
        r = s.get_run(run)
    assert r["state"] == "finished"
    assert [m["step"] for m in r["metrics"] if m["loss"] is not None] == [d["step"] for d in steps]
    assert [m["psnr"] for m in r["metrics"] if m["psnr"] is not None] == [d["psnr"] for d in evals]


def test_headless_progress_output_in_process(tiny_models, tmp_path, capsys):
    target = tmp_path / "bestmodel.pth"
    rc = main(["train", *SMALL, "--epochs", "1", "--headless", "--export-to", str(target), "--runs-dir",
               str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "running" in out and "finished" in out and "8/8" in out
    assert "export as a grader bestmodel.pth: n2n-tui export" in out
    assert f"exported {target}" in out and "verified by reloading" in out  # --export-to, verified like `export`
    from Miniproject_1.model import Model

    Model(device="cpu").load_pretrained_model(target)


def test_ctrl_c_stops_cleanly_and_saves(tmp_path):
    proc = popen("train", *SMALL, "--epochs", "200", "--eval-every", "3", "--json", "--runs-dir", str(tmp_path))
    try:
        lines = read_until(proc, lambda d: d["event"] == "step" and d["step"] >= 4)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines += [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = lines[-1]
    assert last["event"] == "state" and last["state"] == "stopped" and "interrupted" in last["message"]
    run = lines[0]["run"]
    assert any(d["event"] == "saved" and d["what"] == "state" for d in lines)
    assert (tmp_path / run / "best.pth").is_file() and (tmp_path / run / "state.pth").is_file()
    from sessions import Store

    with Store(tmp_path) as s:
        assert s.get_run(run)["state"] == "stopped"


def test_headless_sighup_stops_cleanly(tmp_path):
    import signal
    import subprocess
    import sys

    runs = tmp_path / "runs"
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1")
    small = ["--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", "64", "--batch-size", "4",
             "--n-val", "16", "--device", "cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "train", "--headless", *small, "--epochs", "500",
                             "--runs-dir", str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        poll_last_run(runs, lambda r: r["step"] >= 3)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(60) == 128 + signal.SIGHUP
    finally:
        proc.kill()
    with Store(runs) as s:
        r = s.get_run("last")
    assert r["state"] == "stopped" and "SIGHUP" in r["message"], r["message"]
    assert [e["kind"] for e in r["events"]][-2:] == ["stop", "state"]
    assert (runs / r["id"] / "state.pth").is_file()


BAD = [
    (["--engine", "3"], "engine"),
    (["--lr", "-1"], "positive number"),
    (["--lr", "nan"], "positive number"),
    (["--lr", "fast"], "positive number"),
    (["--epochs", "0"], "positive integer"),
    (["--batch-size", "0"], "positive integer"),
    (["--subset", "-5"], "positive integer"),
    (["--n-val", "0"], "positive integer"),
    (["--eval-every", "-1"], "must be auto, 0 (epoch ends only) or a number of steps"),
    (["--seed", "-1"], "non-negative"),
    (["--device", "tpu"], "device"),
    (["--noise", "nope"], "noise"),
    (["--data", "bogus"], "data"),
    (["--data", "course:/nonexistent/dir"], "/nonexistent/dir"),
    (["--data", "images:/nonexistent/dir"], "/nonexistent/dir"),
    (["--data", "course:data", "--fresh"], "fresh: course data comes already noisy"),
    (["--data", "course:data", "--float-targets"], "float_targets: course data comes already noisy"),
    (["--crop", "40"], "crop: the crop side must be a multiple of 16 from 16 to 256, got 40"),
    (["--data", "course:data", "--crop", "64"], "crop: course data comes in 32 px crops, not 64"),
    (["--resume", "nosuchrun"], "no run"),
] + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "no CUDA device")])


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_option_exits_2_with_one_line(argv, needle, tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    if argv[0] == "--resume":  # a store with one finished run, so "no run matches" is the problem
        from engine.config import RunConfig
        from sessions import Store

        with Store(tmp_path / "runs") as s:
            s.set_state(s.new_run(RunConfig()), "finished")
    try:
        rc = main(["train", *argv, "--headless", "--runs-dir", str(tmp_path / "runs")])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


@pytest.mark.parametrize("argv, needle", [
    (["train", "--epochs", "4611686018427387904"], "--epochs: expected a positive integer up to 100,000"),
    (["train", "--batch-size", "99999999999"], "--batch-size: expected a positive integer up to"),
    (["train", "--eval-every", "99999999999999"], "--eval-every: must be auto, 0 (epoch ends only) or a number of "
                                                   "steps up to 1,000,000,000"),
    (["train", "--seed", "99999999999999999999"], "--seed: expected a non-negative integer up to"),
])
def test_huge_numbers_are_refused_up_front(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--headless", "--runs-dir", str(tmp_path)])
    assert e.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "sessions.sqlite").exists()


def test_run_config_limits_name_the_field():
    from engine.config import ConfigError

    for field, value in (("epochs", 2**62), ("batch_size", 10**9), ("seed", 2**63), ("eval_every", 10**12),
                         ("epochs", True)):
        with pytest.raises(ConfigError, match=f"^{field}: must be"):
            RunConfig(**{field: value}).validate()


def test_bad_store_and_resume_inputs(tmp_path, capsys):
    from engine.config import RunConfig
    from sessions import Store

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["train", "--headless", "--runs-dir", str(a_file)]) == 2
    assert "not a directory" in capsys.readouterr().err

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "sessions.sqlite").write_bytes(b"garbage" * 100)
    assert main(["train", "--headless", "--runs-dir", str(bad)]) == 2
    assert "not an SQLite database" in capsys.readouterr().err
    assert (bad / "sessions.sqlite").read_bytes() == b"garbage" * 100

    runs = tmp_path / "runs"
    with Store(runs) as s:
        done = s.new_run(RunConfig())
        s.set_state(done, "finished")
    assert main(["train", "--resume", "last", "--headless", "--runs-dir", str(runs)]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_of_an_empty_reference_is_refused(tmp_path, capsys):
    with Store(tmp_path) as s:
        s.set_state(s.new_run(cfg()), "stopped")
    assert main(["train", "--resume", "", "--headless", "--runs-dir", str(tmp_path)]) == 2
    assert "empty run reference" in capsys.readouterr().err
    with Store(tmp_path) as s:
        assert len(s.list_runs()) == 1  # no new run was started


def test_bad_input_in_a_real_process(tmp_path):
    r = cli("train", "--data", "course:/nonexistent/dir", "--headless", "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("n2n-tui: error:")
    assert "/nonexistent/dir" in r.stderr and r.stdout == ""


@pytest.mark.slow
def test_a_512_pair_headless_epoch_finishes_within_a_minute(tmp_path):
    """`n2n-tui train --engine 1 --data sample --subset 512 --epochs 1 --eval-every 4 --headless --json`."""
    t0 = time.time()
    r = cli("train", "--engine", "1", "--data", "sample", "--subset", "512", "--epochs", "1", "--eval-every", "4",
            "--headless", "--json", "--runs-dir", str(tmp_path))
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[-1]["state"] == "finished" and took < 60, took


def test_dashboard_mode_checks_the_data_before_opening(tmp_path, capsys):
    # without --headless the data loads in the trainer's thread, but a missing source still fails up front
    assert main(["train", "--data", "course:/nonexistent/dir", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/dir/train_data.pkl: file not found" in err and len(err.strip().splitlines()) == 1
