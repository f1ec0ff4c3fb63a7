"""Regression tests of the hardening issue: each is named after its finding (D: data loss, T: traceback, H: hang,
W: wrong message, state or number) and failed before its fix. Real files, real processes where the process boundary
is the point (signals, pipes, exit codes)."""
from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from engine.config import RunConfig
from engine.trainer import Trainer, read_best_meta
from sessions import Recorder, Store
from trainer_helpers import Log, cfg
from waiting import wait_for_run, wait_until

torch.set_num_threads(1)


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.net.state_dict().items()}


# ------------------------------------------------------------------------------------------------ data loss

def test_d1_resume_without_a_full_state_keeps_best_weights_and_history(tiny_models, poisson_data, tmp_path):
    from tui.commands.train_cmd import make_trainer

    runs = tmp_path / "runs"
    config = cfg(epochs=2, subset=128, eval_every=4)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        t.add_sink(lambda e: t.stop() if e.kind == "step" and e.step == 12 else None)
        assert t.run() == "stopped"
    (runs / run / "state.pth").unlink()  # as if killed before its first full state was written
    best_bytes, best_meta = (runs / run / "best.pth").read_bytes(), read_best_meta(runs / run)
    assert best_meta["step"] > 0

    args = SimpleNamespace(resume=run, runs_dir=str(runs), device=None)
    t2, store = make_trainer(args)
    try:
        assert t2.step == 0 and t2.best_psnr == best_meta["psnr"]
        t2.add_sink(lambda e: t2.stop() if e.kind == "step" and e.step == 2 else None)
        assert t2.run() == "stopped"
    finally:
        store.close()
    # the step-0 evaluation of the restart did not replace the better weights
    assert (runs / run / "best.pth").read_bytes() == best_bytes and read_best_meta(runs / run) == best_meta
    with Store(runs) as s:
        r = s.get_run(run)
    assert r["best_psnr"] == best_meta["psnr"]
    assert [m["step"] for m in r["metrics"] if m["loss"] is not None] == list(range(1, 13))  # history kept
    restart = [e for e in r["events"] if e["kind"] == "restart"]
    assert len(restart) == 1 and "starting over from step 0" in restart[0]["detail"]
    assert "bar to beat" in restart[0]["detail"]


def test_d1_full_state_is_written_on_a_time_basis(tiny_models, poisson_data, tmp_path, monkeypatch):
    import engine.trainer

    monkeypatch.setattr(engine.trainer, "STATE_SECONDS", 0.0)  # every step is "a few minutes later"
    log = Log()
    t = Trainer(cfg(subset=64), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    assert t.run() == "finished"
    states = [e.step for e in log.of("saved") if e.what == "state"]
    assert states == list(range(1, 9)), states  # not only at the epoch end (step 8)
    state = torch.load(tmp_path / "state.pth", weights_only=True)
    assert state["step"] == 8 and state["good"]["step"] <= 8


def test_d2_rollback_target_is_never_weights_a_bad_step_produced(tiny_models, poisson_data, tmp_path, monkeypatch):
    """A step whose own loss looks fine can still ruin the weights (the loss is measured before the update): the
    next snapshot must not keep them."""
    import engine.trainer

    monkeypatch.setattr(engine.trainer, "SNAPSHOT_SECONDS", 0.0)  # as after a pause of more than 5 s: snapshot now
    log = Log()
    t = Trainer(cfg(epochs=3, subset=128), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    real_step = t.model.train_step
    before_bad = {}

    def step(x, y):
        if t.step + 1 == 30:
            before_bad.update(weights(t.model))
        loss = real_step(x, y)
        if t.step + 1 == 30:  # lr 10 at step 30: a fine loss, ruined weights
            with torch.no_grad():
                for p in t.model.net.parameters():
                    p.mul_(1e6)
        return loss

    t.model.train_step = step
    t.start()
    wait_until(lambda: any(e.what == "state" and e.step == 31 for e in log.of("saved")))  # paused, state written
    assert t.state == "paused" and t.step == 31 and "rolled back to the weights of step 29" in t.message, t.message
    now = weights(t.model)
    assert all(torch.equal(now[k], before_bad[k]) for k in now)  # the weights step 30's loss judged good
    state = torch.load(tmp_path / "state.pth", weights_only=True)  # the pause wrote the rolled-back weights
    assert all(torch.equal(state["model"]["model"][k], before_bad[k]) for k in before_bad)
    t.set_lr(1e-3)
    t.resume()
    t.join(30)
    assert t.state == "finished"
    assert len([e for e in log.of("control") if e.action == "guard"]) == 1  # it does not fire again on resume


# ------------------------------------------------------------------------------------------ wrong numbers

def test_w5_lr_changed_while_paused_reaches_the_runs_table(tiny_models, poisson_data, tmp_path):
    runs = tmp_path / "runs"
    config = cfg(epochs=5)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        t.add_sink(lambda e: t.pause() if e.kind == "step" and e.step == 2 else None)
        t.start()
        wait_until(lambda: t.state == "paused")
        t.set_lr(0.002)
        t.set_lr(0.004)
        with Store(runs) as viewer:
            wait_until(lambda: viewer.get_run(run, metrics=False, events=False)["lr"] == 0.004, timeout=5)
        t.stop()
        t.join(10)
        assert s.get_run(run)["lr"] == 0.004 and t.lr == 0.004


@pytest.fixture
def finished_run(tiny_models, poisson_data, tmp_path):
    """A finished engine-1 run in a store, trained a little: (runs_dir, run_id, trainer)."""
    runs = tmp_path / "runs"
    config = cfg(subset=64, eval_every=4)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        assert t.run() == "finished"
    return runs, run, t


def _better_weights(tmp_path, finished_run, poisson_data) -> tuple:
    """A bestmodel.pth that measures better than the run's best on the run's validation images."""
    from engine.evaluate import predict_all
    from engine.metrics import psnr
    from Miniproject_1.model import Model

    runs, run, t = finished_run
    m = Model(widths=(8, 16), device="cpu", lr=3e-3)
    torch.manual_seed(1)
    for _ in range(3):
        for i in range(0, 256, 16):
            m.train_step(poisson_data.train_input[i:i + 16], poisson_data.train_target[i:i + 16])
    theirs = psnr(predict_all(m, poisson_data.val_input), poisson_data.val_target)
    assert theirs > t.best_psnr + 0.1, (theirs, t.best_psnr)
    target = tmp_path / "keep.pth"
    m.save(target)
    return target, theirs


def test_d3_export_never_replaces_better_weights_without_force(finished_run, poisson_data, tmp_path, capsys):
    from tui.cli import main

    runs, run, t = finished_run
    target, theirs = _better_weights(tmp_path, finished_run, poisson_data)
    before = target.read_bytes()
    assert main(["export", run, "--to", str(target), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert f"already scores {theirs:.2f} dB" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert target.read_bytes() == before
    target_garbage = tmp_path / "notes.pth"
    target_garbage.write_bytes(b"my notes, not weights")
    assert main(["export", run, "--to", str(target_garbage), "--runs-dir", str(runs)]) == 2
    assert "does not hold engine-1 weights" in capsys.readouterr().err
    assert target_garbage.read_bytes() == b"my notes, not weights"
    assert main(["export", run, "--to", str(target), "--force", "--runs-dir", str(runs)]) == 0
    assert f"replaced weights that scored {theirs:.2f} dB" in capsys.readouterr().out
    assert target.read_bytes() == (runs / run / "best.pth").read_bytes()


def test_d3_headless_export_to_refuses_better_weights(tiny_models, poisson_data, tmp_path, capsys, monkeypatch,
                                                     finished_run):
    """``train --headless --export-to`` exports at the end through the same verified, refusing export."""
    import engine.data
    from tui.cli import main

    target, theirs = _better_weights(tmp_path, finished_run, poisson_data)
    before = target.read_bytes()
    monkeypatch.setattr(engine.data, "load_sample", lambda *a, **k: poisson_data)
    argv = ["train", "--headless", "--engine", "1", "--noise", "poisson", "--subset", "16", "--batch-size", "8",
            "--n-val", "64", "--device", "cpu", "--export-to", str(target), "--runs-dir", str(tmp_path / "r2")]
    assert main(argv) == 2
    assert "already scores" in capsys.readouterr().err and target.read_bytes() == before


@pytest.mark.parametrize("make", ["device", "fifo", "dir"])
def test_d4_export_refuses_targets_that_are_not_regular_files(finished_run, tmp_path, capsys, make):
    import os

    from tui.cli import main

    runs, run, _ = finished_run
    if make == "device":
        target = "/dev/null"
    elif make == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
    else:
        target = str(tmp_path / "adir")
        os.mkdir(target)
    assert main(["export", run, "--to", target, "--force", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert ("not a regular file" in err or "is a directory" in err) and len(err.strip().splitlines()) == 1
    if make == "device":
        assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    if make == "dir":
        assert os.listdir(target) == []


def test_d5_data_make_refuses_to_overwrite_without_force(tmp_path, capsys):
    from tui.cli import main

    out = tmp_path / "data"
    out.mkdir()
    (out / "train_data.pkl").write_bytes(b"the course's own data")
    argv = ["data", "make", "--out", str(out), "--n-train", "4", "--n-val", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train_data.pkl already there" in err and "--force" in err
    assert (out / "train_data.pkl").read_bytes() == b"the course's own data" and not (out / "val_data.pkl").exists()
    assert main(argv + ["--force"]) == 0
    assert torch.load(out / "train_data.pkl", weights_only=True)[0].shape == (4, 3, 32, 32)


@pytest.mark.parametrize("argv, needle", [
    (["train", "--epochs", "4611686018427387904"], "--epochs: expected a positive integer up to 100,000"),
    (["train", "--batch-size", "99999999999"], "--batch-size: expected a positive integer up to"),
    (["train", "--eval-every", "99999999999999"], "--eval-every: expected a non-negative integer up to"),
    (["train", "--seed", "99999999999999999999"], "--seed: expected a non-negative integer up to"),
])
def test_d6_huge_numbers_are_refused_up_front(argv, needle, tmp_path, capsys):
    from tui.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv + ["--headless", "--runs-dir", str(tmp_path)])
    assert e.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "sessions.sqlite").exists()


def test_d6_runconfig_limits_name_the_field():
    from engine.config import ConfigError

    for field, value in (("epochs", 2**62), ("batch_size", 10**9), ("seed", 2**63), ("eval_every", 10**12),
                         ("epochs", True)):
        with pytest.raises(ConfigError, match=f"^{field}: must be"):
            RunConfig(**{field: value}).validate()


# ------------------------------------------------------------------------------------------------ tracebacks

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


def test_t2_a_closed_pipe_is_a_quiet_exit(tmp_path):
    runs = tmp_path / "runs"
    with Store(runs) as s:
        run = s.new_run(cfg())
        s._transaction(lambda c: c.executemany(
            "INSERT INTO events (run, time, kind, detail, step) VALUES (?, ?, 'note', ?, ?)",
            [(run, time.time(), "x" * 60, i) for i in range(20000)]))
        s.set_state(run, "stopped")
        for _ in range(600):
            s.set_state(s.new_run(cfg()), "stopped")
    for args, pipe in ((["runs"], "head -1"), (["show", run], "head -1"), (["show", run, "--json"], "head -c 10")):
        p = _run_cli(*args, "--runs-dir", str(runs), shell_pipe=pipe)
        assert p.stderr == "", p.stderr
        assert p.stdout.strip() == "rc=141", (args, p.stdout)


def test_t3_empty_or_odd_checkpoints_are_one_line_errors(finished_run, tmp_path, capsys):
    from tui.cli import main

    runs, run, _ = finished_run
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


@pytest.mark.parametrize("argv, needle", [
    (["eval", "--engine", "1", "--n-val", "100000000000"], "--n-val: expected a positive integer up to 10,000,000"),
    (["train", "--headless", "--subset", "100000000000"], "--subset: expected a positive integer up to"),
    (["data", "make", "--out", "OUT", "--n-train", "100000000000"], "--n-train: expected a positive integer up to"),
    (["train", "--headless", "--subset", "9000000"], "subset: 9,000,000 pairs need about"),
    (["data", "make", "--out", "OUT", "--n-train", "9000000"], "--n-train 9000000: 9,000,000 pairs need about"),
    (["eval", "--engine", "1", "--n-val", "9000000", "--data", "sample"], "--n-val 9000000: 9,000,000 pairs need"),
])
def test_t4_huge_sizes_are_refused_up_front(argv, needle, tmp_path):
    p = _run_cli(*[a.replace("OUT", str(tmp_path / "o")) for a in argv], "--runs-dir", str(tmp_path / "runs")) \
        if argv[0] == "train" else _run_cli(*[a.replace("OUT", str(tmp_path / "o")) for a in argv])
    assert p.returncode == 2 and needle in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


# ------------------------------------------------------------------------------------- wrong message or state

def test_w1_resume_of_an_empty_reference_is_refused(tmp_path, capsys):
    from tui.cli import main

    with Store(tmp_path) as s:
        s.set_state(s.new_run(cfg()), "stopped")
    assert main(["train", "--resume", "", "--headless", "--runs-dir", str(tmp_path)]) == 2
    assert "empty run reference" in capsys.readouterr().err
    with Store(tmp_path) as s:
        assert len(s.list_runs()) == 1  # no new run was started


def _course(tmp_path, name, train_shape, val_shape):
    d = tmp_path / name
    d.mkdir()
    torch.save((torch.zeros(train_shape, dtype=torch.uint8),) * 2, d / "train_data.pkl")
    torch.save((torch.zeros(val_shape, dtype=torch.uint8),) * 2, d / "val_data.pkl")
    return d


@pytest.mark.parametrize("train_shape, val_shape, needle", [
    ((0, 3, 32, 32), (4, 3, 32, 32), "train_data.pkl: holds 0 image pairs"),
    ((4, 3, 32, 32), (0, 3, 32, 32), "val_data.pkl: holds 0 image pairs"),
    ((4, 3, 2, 2), (4, 3, 2, 2), "images are 2x2, at least 4x4 are needed"),
])
def test_w3_unusable_course_files_are_refused_at_load(tmp_path, capsys, train_shape, val_shape, needle):
    from tui.cli import main

    d = _course(tmp_path, "c", train_shape, val_shape)
    assert main(["train", "--headless", "--data", f"course:{d}", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or Store(tmp_path / "runs").list_runs() == []


def test_w3_miniproject1_trains_on_sizes_that_are_not_multiples_of_4():
    from Miniproject_1.model import Model

    m = Model(widths=(8, 16), device="cpu")
    for h, w in ((5, 7), (33, 65), (4, 4)):
        x = torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8)
        assert math.isfinite(m.train_step(x, x))
        assert m.predict(x).shape == (2, 3, h, w)


def test_w7_messages_name_the_problem(tmp_path, capsys):
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


def test_w8_empty_runs_dir_means_the_default_everywhere(tmp_path, capsys, monkeypatch):
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


def test_w8_runs_dir_before_the_command_is_the_one_used():
    """``n2n-tui --runs-dir DIR runs`` once read ./runs: the command's own default replaced the earlier value."""
    from tui.parser import build_parser

    for cmd in (["runs"], ["show", "last"], ["attach"], ["ctl", "last", "stop"], ["train"], ["sweeps"]):
        assert build_parser().parse_args(["--runs-dir", "elsewhere", *cmd]).runs_dir == "elsewhere", cmd
        assert build_parser().parse_args(["--runs-dir", "a", *cmd, "--runs-dir", "b"]).runs_dir == "b", cmd


# -------------------------------------------------------------------------------------------- the dashboard

def test_t1_resizing_while_points_arrive_never_crashes():
    import asyncio

    from test_tui_dashboard import make_app
    from tui.widgets import LossPlot, PsnrPlot

    async def go():
        app, trainer, store = make_app(total_steps=100000, delay=0.002, every=20)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            for size in [(79, 24), (40, 12), (120, 40), (41, 13), (80, 24), (200, 60), (40, 12), (80, 24)] * 2:
                await pilot.resize_terminal(*size)
                screen.drain(force_plots=True)  # new points drawn at this size, then rendered again on resize
                await pilot.pause(0.05)
            assert app.is_running and screen.query_one(LossPlot).n_points > 20
            assert screen.query_one(PsnrPlot).n_points >= 1
            trainer.stop()
    asyncio.run(go())


def test_w8_loss_axis_labels_read_top_down_at_40x12():
    """Larger losses above smaller ones, at the smallest size too (the labels were upside down at 40x12): in the
    dashboard, where the plot is only a few rows high, and in a plot of its own."""
    import asyncio
    import re

    from textual.app import App

    from test_tui_snapshots import dashboard_app, feed_history
    from tui.widgets import LossPlot

    def labels(plot) -> list[float]:
        lines = [line.plain for line in plot.render().split()]
        return [float(m.group(1)) for line in lines if (m := re.match(r"^\s*([0-9.e+-]+)\s*┤", line))]

    class One(App):
        def compose(self):
            yield LossPlot(id="p")

    async def go():
        app = dashboard_app()
        async with app.run_test(size=(40, 12)) as pilot:
            await feed_history(pilot)
            await pilot.pause(0.1)
            found = labels(app.screen.query_one(LossPlot))
            assert found == sorted(found, reverse=True), found
        app = One()
        async with app.run_test(size=(40, 12)) as pilot:
            plot = app.query_one(LossPlot)
            plot.add_points([(i, 0.5 / i) for i in range(1, 200)])
            plot.redraw()
            await pilot.pause(0.1)
            found = labels(plot)
            assert len(found) >= 2 and found == sorted(found, reverse=True), found
    asyncio.run(go())


def test_w8_replace_question_fits_at_80x24():
    import asyncio

    from textual.app import App

    from tui.screens import ConfirmScreen

    question = ("/home/user/project/Miniproject_1/bestmodel.pth already scores 28.11 dB, better than this run's "
                "best 21.02 dB on the same validation images. Replace it?")

    import tui.app

    class Styled(App):
        CSS_PATH = str(Path(tui.app.__file__).parent / "app.tcss")

    async def go():
        app = Styled()
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(ConfirmScreen(question))
            await pilot.pause(0.1)
            label = app.screen.query_one("#confirm-question")
            text = "".join(str(s.text) for s in label.render_lines(label.region.reset_offset))
            assert "Replace it?" in text.replace("\n", " ") or "Replace it?" in " ".join(text.split())
            assert label.region.height >= 3 and app.screen.region.contains_region(label.region)
    asyncio.run(go())


# ------------------------------------------------------------------------------------ disks that refuse writes

@pytest.fixture
def small_disk(tmp_path):
    """A real 64 MiB file system (tmpfs) under tmp_path, remountable read-only: a full disk and a read-only folder
    as the kernel makes them. Needs root (CI runs as root); skipped where mounting is not allowed."""
    import os
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")

    try:
        yield SimpleNamespace(path=mnt, remount=lambda mode: subprocess.run(
            ["mount", "-o", f"remount,{mode}", str(mnt)], check=True))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder, leave: int = 0) -> None:
    """Fill the file system of ``folder`` up to ``leave`` bytes."""
    import os

    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to flush at close
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    if leave:
        os.truncate(folder / "filler", os.path.getsize(folder / "filler") - leave)


def test_w6_full_disk_says_so_and_keeps_the_previous_checkpoint(tiny_models, poisson_data, small_disk):
    runs = small_disk.path / "runs"
    config = cfg(epochs=3)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        log = Log()
        t.add_sink(log)
        t.add_sink(lambda e: t.pause() if e.kind == "step" and e.step == 40 else None)
        t.start()
        wait_until(lambda: any(e.kind == "saved" and e.what == "state" and e.step == 40 for e in log))
        state_before = (runs / run / "state.pth").read_bytes()
        _fill(small_disk.path, leave=64 * 1024)  # room for the store's rows, not for a checkpoint
        t.resume()
        t.join(60)
    assert t.state == "failed" and t.message.startswith("WriteError: no space left on device: ")
    assert str(runs / run) in t.message and ".tmp" not in t.message
    assert (runs / run / "state.pth").read_bytes() == state_before  # the previous checkpoint, intact
    assert not [p for p in (runs / run).iterdir() if p.name.endswith(".tmp")]


def test_w4_viewing_works_in_a_read_only_runs_folder(small_disk, capsys):
    import json

    from engine.events import StateEvent
    from tui.cli import main

    runs = small_disk.path / "runs"
    with Store(runs) as s:
        done = s.new_run(cfg())
        s.set_state(done, "stopped")
        gone = s.new_run(cfg())
        Recorder(s, gone)(StateEvent(gone, "running"))
        s.release(gone)  # its process died, and nobody has looked since
    small_disk.remount("ro")
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert done in out and gone in out
    assert main(["show", gone, "--json", "--runs-dir", str(runs)]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "crashed"
    assert main(["runs", "--json", "--runs-dir", str(runs)]) == 0
    assert {r["id"]: r["state"] for r in json.loads(capsys.readouterr().out)} == {done: "stopped", gone: "crashed"}


def test_w7_export_into_a_read_only_folder_names_the_target(finished_run, small_disk, capsys):
    from tui.cli import main

    runs, run, _ = finished_run
    small_disk.remount("ro")
    target = small_disk.path / "bestmodel.pth"
    assert main(["export", run, "--to", str(target), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"n2n-tui: error: read-only file system: {target}", err


def test_a_full_or_read_only_runs_folder_says_so_and_an_export_elsewhere_still_succeeds(
        tiny_models, poisson_data, small_disk, tmp_path, capsys):
    from tui.cli import main

    runs = small_disk.path / "runs"
    config = cfg(subset=64, eval_every=4)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        assert t.run() == "finished"
    db = runs / "sessions.sqlite"
    _fill(small_disk.path)
    assert main(["tag", run, "a note that needs a page", "--runs-dir", str(runs)]) == 2
    assert capsys.readouterr().err.strip() == f"n2n-tui: error: no space left on device: {db}"
    target = tmp_path / "bestmodel.pth"  # another file system, with room
    assert main(["export", run, "--to", str(target), "--force", "--runs-dir", str(runs)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {target}") and target.is_file()
    assert f"the export is done, but the store could not note it (no space left on device: {db})" in err
    (small_disk.path / "filler").unlink()
    small_disk.remount("ro")
    assert main(["tag", run, "x", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"n2n-tui: error: {db}") and "read-only" in err and "rollback" not in err, err
    assert main(["export", run, "--to", str(target), "--force", "--runs-dir", str(runs)]) == 0
    assert "could not note it" in capsys.readouterr().err


def test_w8_runs_time_of_a_resumed_run_leaves_out_the_time_it_sat_stopped(tmp_path, capsys, monkeypatch):
    import json

    from engine.events import StateEvent
    from tui.cli import main

    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    with Store(tmp_path) as s:
        run = s.new_run(cfg())
        rec = Recorder(s, run)
        rec(StateEvent(run, "running"))
        clock[0] += 60
        rec(StateEvent(run, "stopped"))
        clock[0] += 86400  # a day later
        rec2 = Recorder(s, run)
        s.begin_resume(run, 0)
        rec2(StateEvent(run, "running"))
        clock[0] += 30
        rec2(StateEvent(run, "finished"))
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    assert " 1m30s " in capsys.readouterr().out
    assert main(["runs", "--json", "--runs-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["active"] == pytest.approx(90)


# ------------------------------------------------------------------------------------------- signals, terminals

SMALL = ["--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", "64", "--batch-size", "4",
         "--n-val", "16", "--device", "cpu"]


def test_d7_headless_sighup_stops_cleanly(tmp_path):
    import signal
    import subprocess
    import sys

    runs = tmp_path / "runs"
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "train", "--headless", *SMALL, "--epochs", "500",
                             "--runs-dir", str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        wait_for_run(runs, lambda r: r["step"] >= 3)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(60) == 128 + signal.SIGHUP
    finally:
        proc.kill()
    with Store(runs) as s:
        r = s.get_run("last")
    assert r["state"] == "stopped" and "SIGHUP" in r["message"], r["message"]
    assert [e["kind"] for e in r["events"]][-2:] == ["stop", "state"]
    assert (runs / r["id"] / "state.pth").is_file()


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_d7_dashboard_killed_by_a_signal_stops_the_run_cleanly(tmp_path, sig):
    import signal

    from terminal import Terminal

    runs = tmp_path / "runs"  # the run in the dashboard's own process (with a runner, SIGHUP leaves it training)
    term = Terminal("train", "--in-process", *SMALL, "--epochs", "500", "--runs-dir", str(runs))
    try:
        wait_for_run(runs, lambda r: r["step"] >= 3)
        term.proc.send_signal(getattr(signal, sig))
        assert term.wait(60) == 128 + getattr(signal, sig)
    finally:
        term.close()
    with Store(runs) as s:
        r = s.get_run("last")
    assert r["state"] == "stopped" and sig in r["message"], (r["state"], r["message"])
    assert (runs / r["id"] / "state.pth").is_file()


def test_h1_the_dashboard_without_a_terminal_says_so(tmp_path):
    import subprocess
    import sys

    for args in (["train", *SMALL], []):
        p = subprocess.run([sys.executable, "-m", "tui.cli", *args, "--runs-dir", str(tmp_path)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "needs a terminal" in p.stderr and p.stdout == "", (p.returncode, p.stderr)
    assert not (tmp_path / "sessions.sqlite").exists()  # nothing was started


def test_w2_headless_output_closed_stops_the_run_cleanly(tmp_path):
    p = _run_cli("train", "--headless", *SMALL, "--epochs", "50", "--eval-every", "2", "--runs-dir",
                 str(tmp_path), shell_pipe="head -1")
    assert p.stdout.strip() == "rc=141" and p.stderr == "", (p.stdout, p.stderr)
    with Store(tmp_path) as s:
        r = s.get_run("last")
    assert r["state"] == "stopped" and r["message"] == "output closed"


def test_w8_a_run_that_ends_before_its_dashboard_attaches_says_how(tmp_path, monkeypatch):
    """On a busy machine the runner can fail (its data would not load) and close its socket before the dashboard
    connects: seen in CI as "the runner did not say hello", exit 2. The real runner and socket; only the viewer's
    connection is held back until the runner is gone."""
    import tui.commands.train_cmd as train_cmd
    from tui.parser import build_parser

    runs, images = tmp_path / "runs", tmp_path / "imgs"
    images.mkdir()
    real_attach = train_cmd.attach_run

    def late_attach(runs_dir, run_id):
        wait_for_run(runs, lambda r: r["state"] == "failed", timeout=60)
        wait_until(lambda: not (runs / run_id / "control.sock").exists(), timeout=30)
        return real_attach(runs_dir, run_id)

    monkeypatch.setattr(train_cmd, "attach_run", late_attach)
    args = build_parser().parse_args(["train", "--data", f"images:{images}", "--runs-dir", str(runs)])
    with pytest.raises(train_cmd.RunEnded, match=r"run \S+ failed: .*imgs") as e:
        train_cmd.start_run(args)
    assert e.value.status == 1
    _wait_runner_gone(runs)


def _wait_runner_gone(runs, timeout=60.0):
    """A failed run's runner exits just after closing its socket; on a loaded machine that can take seconds (a
    zombie until reaped counts as gone)."""
    pid = wait_for_run(runs, lambda r: True)["pid"]

    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] == "Z"
        except OSError:
            return True

    wait_until(gone, timeout=timeout)


def test_w8_a_run_that_fails_in_the_dashboard_exits_1(tmp_path):
    from terminal import Terminal

    runs = tmp_path / "runs"
    images = tmp_path / "imgs"  # exists, so the up-front check passes; the trainer's own load then fails
    images.mkdir()
    term = Terminal("train", "--data", f"images:{images}", "--runs-dir", str(runs))
    try:
        wait_for_run(runs, lambda r: r["state"] == "failed", timeout=60)
        # the dashboard shows it even when its viewer connected only after the runner had failed (a loaded machine)
        assert term.wait_for_output("failed", timeout=30), term.text()
        term.send("q")
        try:
            rc = term.wait(30)
        except Exception:
            raise AssertionError(f"the dashboard did not exit after q: {term.text()}") from None
        assert rc == 1
        _wait_runner_gone(runs)
    finally:
        term.close()


class _NotAState:  # a Python object: what a tampered state.pth might hold
    pass


def test_a_tampered_training_state_is_one_line_naming_the_file(finished_run, poisson_data):
    from engine.trainer import CheckpointError

    runs, run, t = finished_run
    state = runs / run / "state.pth"
    torch.save({"format": "n2n-tui/train-state", "evil": _NotAState()}, state)
    with pytest.raises(CheckpointError) as e:
        Trainer(t.config, run_dir=runs / run, dataset=poisson_data, resume_from=runs / run)
    msg = str(e.value)
    assert msg == (f"{state}: not a readable training state (it holds Python objects besides tensors and plain "
                   "values, so n2n-tui did not write it; refused unread)"), msg


def test_the_in_process_dashboard_draws_on_the_terminal_and_cpp_warnings_go_to_the_log(tmp_path):
    """`train --in-process` sends what C++ code writes to stderr into runner.log; the dashboard itself (which
    Textual draws on stderr) must stay on the terminal, not go into the log with a blank screen left behind."""
    from terminal import Terminal

    runs = tmp_path / "runs"
    term = Terminal("train", "--in-process", *SMALL, "--epochs", "500", "--runs-dir", str(runs), cols=100, rows=30)
    try:
        wait_for_run(runs, lambda r: r["step"] >= 3)
        assert term.wait_for_output("loss (log scale)", timeout=30), term.text()
        term.send("x")
        assert term.wait_for_output("Stop run", timeout=30), term.text()
        term.send("y")
        wait_for_run(runs, lambda r: r["state"] == "stopped")
    finally:
        term.close()
    with Store(runs) as s:
        r = s.get_run("last")
    log = (runs / r["id"] / "runner.log").read_bytes()
    assert b"loss (log scale)" not in log and b"\x1b[" not in log, log[:200]
