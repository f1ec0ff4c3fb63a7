"""The session store: runs, batched metric points, events, run references, crash detection, corrupt and foreign
databases, and the ``runs`` / ``show`` / ``tag`` / ``export`` commands (a resumed run's active time, tags where
people read, export's verification and its refusals)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

import pytest
import torch
from trainer_helpers import cfg
from waiting import wait_until

from engine.config import RunConfig
from engine.events import ControlEvent, EvalEvent, SavedEvent, StateEvent, StepEvent
from engine.trainer import Trainer
from sessions import Recorder, Store, StoreError
from sessions.export import ExportError, export_run
from tui.cli import main

torch.set_num_threads(1)


def test_new_store_is_sqlite_in_wal_mode(tmp_path):
    runs = tmp_path / "deep" / "runs"
    with Store(runs) as s:
        run_id = s.new_run(RunConfig(engine=2, lr=1e-3))
        assert s.run_dir(run_id) == runs / run_id and s.run_dir(run_id).is_dir()
    conn = sqlite3.connect(runs / "sessions.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with Store(runs) as s:  # reopening an existing store
        [r] = s.list_runs()
        assert r["id"] == run_id and r["engine"] == 2 and r["lr"] == 1e-3 and r["config"]["engine"] == 2
        assert {"id", "engine", "state", "step", "epoch", "lr", "best_psnr", "best_step", "started", "ended",
                "config"} <= set(r)


def test_resolve_prefix_last_and_errors(tmp_path):
    with Store(tmp_path) as s:
        with pytest.raises(StoreError, match="no runs"):
            s.resolve("last")
        a = s.new_run(RunConfig())
        b = s.new_run(RunConfig())
        assert s.resolve(a) == a and s.resolve("last") == b
        common = os.path.commonprefix([a, b])
        assert s.resolve(b[:len(common) + 1]) == b  # the shortest unique prefix
        with pytest.raises(StoreError, match="ambiguous"):
            s.resolve(common)
        with pytest.raises(StoreError, match="no run matches"):
            s.resolve("zzz")
        with pytest.raises(StoreError, match="no run matches"):
            s.resolve("2%")  # LIKE wildcards are taken literally


def test_recorder_batches_and_records_everything(tmp_path):
    with Store(tmp_path) as s:
        run = s.new_run(RunConfig())
        rec = Recorder(s, run)
        rec(StateEvent(run, "running"))
        for i in range(1, 1201):
            rec(StepEvent(run, i, 1 + i // 600, 1.0 / i, 1e-3, 500.0, 1200))
            if i % 100 == 0:
                rec(EvalEvent(run, i, 1 + i // 600, 20 + i / 100, 20 + i / 100))
                rec(SavedEvent(run, path="best.pth", psnr=20 + i / 100, step=i, what="best"))
        rec(StepEvent(run, 1201, 3, float("nan"), 1e-3, 500.0, 1201))
        rec(ControlEvent(run, "lr", "0.001 -> 0.0005", step=1201))
        rec(StateEvent(run, "finished", step=1201, epoch=3))
        r = s.get_run(run[:12])
    assert r["state"] == "finished" and r["ended"] and r["step"] == 1201 and r["total_steps"] == 1201
    assert r["best_psnr"] == 32.0 and r["best_step"] == 1200
    m = r["metrics"]
    assert [p["step"] for p in m] == list(range(1, 1202))
    assert sum(p["psnr"] is not None for p in m) == 12 and m[99]["psnr"] == 21.0 and m[98]["psnr"] is None
    assert m[-1]["loss"] is None  # NaN is stored as null
    assert set(m[0]) == {"step", "epoch", "loss", "lr", "psnr"}
    kinds = [(e["kind"], e["detail"]) for e in r["events"]]
    assert kinds == [("state", "running"), ("lr", "0.001 -> 0.0005"), ("state", "finished")]
    assert all(set(e) >= {"time", "kind", "detail"} for e in r["events"])
    assert [c["kind"] for c in r["checkpoints"]] == ["best"]


def test_an_lr_changed_while_paused_reaches_the_runs_table(tiny_models, poisson_data, tmp_path):
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


def test_foreign_or_corrupt_database_is_refused_and_left_alone(tmp_path):
    corrupt = tmp_path / "a" / "sessions.sqlite"
    corrupt.parent.mkdir()
    corrupt.write_bytes(os.urandom(4096))
    before = corrupt.read_bytes()
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store(corrupt.parent)
    assert corrupt.read_bytes() == before

    foreign = tmp_path / "b" / "sessions.sqlite"
    foreign.parent.mkdir()
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE accounts (id INTEGER, name TEXT)")
    conn.commit()
    conn.close()
    before, mtime = foreign.read_bytes(), foreign.stat().st_mtime_ns
    with pytest.raises(StoreError, match="not an n2n-tui session store"):
        Store(foreign.parent)
    assert foreign.read_bytes() == before and foreign.stat().st_mtime_ns == mtime
    assert not (foreign.parent / "sessions.sqlite-wal").exists()

    truncated = tmp_path / "c"
    with Store(truncated) as s:
        s.new_run(RunConfig())
    data = (truncated / "sessions.sqlite").read_bytes()
    (truncated / "sessions.sqlite").write_bytes(data[:100] + os.urandom(len(data) - 100))
    with pytest.raises(StoreError):
        Store(truncated).list_runs()


def test_a_run_whose_process_is_gone_reads_crashed(tmp_path):
    with Store(tmp_path) as s:
        run = s.new_run(RunConfig())
        Recorder(s, run)(StateEvent(run, "running"))
        with Store(tmp_path) as viewer:  # the owner is alive: still running
            assert viewer.get_run(run)["state"] == "running"
            with pytest.raises(StoreError, match="another process"):
                viewer.acquire(run, tries=1)
        s.release(run)  # what the kernel does when the owner dies
        with Store(tmp_path) as later:
            r = later.get_run(run)
            assert r["state"] == "crashed" and r["ended"] is not None
            assert r["events"][-1]["kind"] == "crashed"


def test_runs_and_show_commands(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    assert "no runs" in capsys.readouterr().out and not runs.exists()  # looking creates nothing
    assert main(["runs", "--json", "--runs-dir", str(runs)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["show", "last", "--runs-dir", str(runs)]) == 2
    assert "no runs" in capsys.readouterr().err

    with Store(runs) as s:
        run = s.new_run(RunConfig(noise="gaussian", epochs=3))
        rec = Recorder(s, run)
        rec(StateEvent(run, "running"))
        for i in range(1, 11):
            rec(StepEvent(run, i, 1, 0.1 / i, 1e-3, 100.0, 10))
        rec(EvalEvent(run, 10, 1, 23.5, 23.5))
        rec(SavedEvent(run, path="best.pth", psnr=23.5, step=10))
        rec(ControlEvent(run, "pause", step=10))
        rec(StateEvent(run, "stopped", step=10, epoch=1))

    assert main(["runs", "--json", "--runs-dir", str(runs)]) == 0
    [r] = json.loads(capsys.readouterr().out)
    assert r["id"] == run and r["state"] == "stopped" and r["best_psnr"] == 23.5 and r["step"] == 10
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert run in out and "stopped" in out and "23.50" in out

    assert main(["show", run[:10], "--json", "--runs-dir", str(runs)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["id"] == run and d["config"]["noise"] == "gaussian" and len(d["metrics"]) == 10
    assert d["metrics"][-1] == {"step": 10, "epoch": 1, "loss": 0.01, "lr": 1e-3, "psnr": 23.5}
    assert [e["kind"] for e in d["events"]] == ["state", "pause", "state"]
    assert main(["show", "last", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "best PSNR 23.50 dB at step 10" in out and "noise=gaussian" in out and "pause" in out
    assert main(["show", "nope", "--runs-dir", str(runs)]) == 2
    assert "no run matches" in capsys.readouterr().err


def test_runs_time_of_a_resumed_run_leaves_out_the_time_it_sat_stopped(tmp_path, capsys, monkeypatch):
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


def test_tag_shows_in_runs(tmp_path, capsys):
    with Store(tmp_path) as s:
        run = s.new_run(RunConfig())
        s.set_state(run, "stopped")
    assert main(["tag", run[:10], "lr sweep winner", "--runs-dir", str(tmp_path)]) == 0
    assert main(["runs", "--json", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])[0]["tag"] == "lr sweep winner"
    # ... and where people read: the runs table and show (the README says they do)
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith(run)]
    assert row and row[0].endswith("\u00ablr sweep winner\u00bb"), row
    assert main(["show", run, "--runs-dir", str(tmp_path)]) == 0
    assert "tag     lr sweep winner" in capsys.readouterr().out.splitlines()
    with Store(tmp_path) as s:  # a sweep's best run: sweeps names it with its tag
        s.new_sweep("sweep-1", {}, str(tmp_path / "sweeps" / "sweep-1"))
        s.set_sweep_state("sweep-1", "finished", run, 24.5)
        s.new_sweep("sweep-2", {}, str(tmp_path / "sweeps" / "sweep-2"))
        s.set_sweep_state("sweep-2", "failed")
    assert main(["sweeps", "--runs-dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["sweep-1"].endswith(f"{run}  \u00ablr sweep winner\u00bb") and rows["sweep-2"].endswith("-")
    assert main(["tag", "nope", "x", "--runs-dir", str(tmp_path)]) == 2


def test_export_writes_a_verified_grader_file(trained_run, tmp_path, capsys, monkeypatch):
    runs, run, t = trained_run
    target = tmp_path / "out" / "bestmodel.pth"
    target.parent.mkdir()
    assert main(["export", "last", "--to", str(target), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {target}" in out and "verified by reloading" in out
    assert target.stat().st_mode & 0o777 == 0o644  # readable by the grader, not just its owner
    from engine.evaluate import predict_all
    from engine.metrics import psnr
    from Miniproject_1.model import Model

    fresh = Model(device="cpu")
    fresh.load_pretrained_model(target)  # what the grader does
    from engine.data import load_data

    ds = load_data("sample", noise="poisson", seed=0, n_train=1, n_val=64)
    assert psnr(predict_all(fresh, ds.val_input), ds.val_target) == pytest.approx(t.best_psnr, abs=1e-3)
    with Store(runs) as s:
        assert s.get_run(run)["events"][-1]["kind"] == "export"
        # the default target is the checkout's Miniproject_<engine>/bestmodel.pth (redirected here)
        import sessions.export

        monkeypatch.setattr(sessions.export, "bestmodel_path", lambda engine: tmp_path / f"mp{engine}.pth")
        r = export_run(s, run, dataset=t.dataset)
        assert r["path"] == str(tmp_path / "mp1.pth") and r["engine"] == 1
        assert r["psnr"] == pytest.approx(r["recorded_psnr"], abs=1e-3)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_export_refuses_a_mismatch_without_touching_the_target(trained_run, tmp_path, capsys):
    runs, run, t = trained_run
    target = tmp_path / "bestmodel.pth"
    target.write_bytes(b"the previous, precious bestmodel.pth")
    meta_path = runs / run / "best.json"
    meta = json.loads(meta_path.read_text())
    meta["psnr"] += 0.5  # the recorded number no longer matches what the weights measure
    meta_path.write_text(json.dumps(meta))
    with Store(runs) as s, pytest.raises(ExportError, match="export refused"):
        export_run(s, run, target, dataset=t.dataset)
    assert main(["export", run, "--to", str(target), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "export refused" in err and len(err.strip().splitlines()) == 1
    assert target.read_bytes() == b"the previous, precious bestmodel.pth"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []

    # weights changed behind the record's back (hash mismatch), and weights that do not load at all
    (runs / run / "best.pth").write_bytes(b"garbage")
    with Store(runs) as s, pytest.raises(ExportError, match="does not match"):
        export_run(s, run, target, dataset=t.dataset)
    meta_path.unlink()
    with Store(runs) as s, pytest.raises(ExportError, match="do not load in a fresh Model"):
        export_run(s, run, target, dataset=t.dataset)
    assert target.read_bytes() == b"the previous, precious bestmodel.pth"


def test_export_bad_targets_exit_2(trained_run, tmp_path, capsys):
    runs, run, _ = trained_run
    assert main(["export", run, "--to", str(tmp_path / "no" / "such" / "dir" / "m.pth"), "--runs-dir",
                 str(runs)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with Store(runs) as s:
        empty = s.new_run(RunConfig())
        s.set_state(empty, "failed", "nothing")
    assert main(["export", empty, "--to", str(tmp_path / "m.pth"), "--runs-dir", str(runs)]) == 2
    assert "no best weights yet" in capsys.readouterr().err


def test_export_refuses_weights_no_better_than_the_noisy_input(tiny_models, poisson_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    config = RunConfig(engine=1, noise="poisson", epochs=1, batch_size=8, lr=3e-3, subset=64, n_val=64,
                       eval_every=0, device="cpu")
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        t.add_sink(lambda e: t.stop() if e.kind == "step" else None)  # stopped before any evaluation but step 0's
        assert t.run() == "stopped" and t.best_step == 0
    target = tmp_path / "bestmodel.pth"
    assert main(["export", run, "--to", str(target), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no better than the noisy input itself" in err and "--force" in err and len(err.splitlines()) == 1
    assert not target.exists()
    assert main(["export", run, "--to", str(target), "--force", "--runs-dir", str(runs)]) == 0
    assert target.is_file()


def _better_weights(tmp_path, trained_run, poisson_data) -> tuple:
    """A bestmodel.pth that measures better than the run's best on the run's validation images."""
    from engine.evaluate import predict_all
    from engine.metrics import psnr
    from Miniproject_1.model import Model

    runs, run, t = trained_run
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


def test_export_never_replaces_better_weights_without_force(trained_run, poisson_data, tmp_path, capsys):
    runs, run, t = trained_run
    target, theirs = _better_weights(tmp_path, trained_run, poisson_data)
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


def test_headless_export_to_refuses_better_weights(tiny_models, poisson_data, tmp_path, capsys, monkeypatch,
                                                     trained_run):
    """``train --headless --export-to`` exports at the end through the same verified, refusing export."""
    import engine.data

    target, theirs = _better_weights(tmp_path, trained_run, poisson_data)
    before = target.read_bytes()
    monkeypatch.setattr(engine.data, "load_sample", lambda *a, **k: poisson_data)
    argv = ["train", "--headless", "--engine", "1", "--noise", "poisson", "--subset", "16", "--batch-size", "8",
            "--n-val", "64", "--device", "cpu", "--export-to", str(target), "--runs-dir", str(tmp_path / "r2")]
    assert main(argv) == 2
    assert "already scores" in capsys.readouterr().err and target.read_bytes() == before


@pytest.mark.parametrize("make", ["device", "fifo", "dir"])
def test_export_refuses_targets_that_are_not_regular_files(trained_run, tmp_path, capsys, make):
    import os

    runs, run, _ = trained_run
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


def test_an_export_killed_mid_way_leaves_no_temporary_file_for_ever(trained_run, tmp_path, capsys):
    import time as time_

    runs, run, _ = trained_run
    target = tmp_path / "bestmodel.pth"
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftovers = [tmp_path / f".bestmodel.pth.{dead.pid}-k3x9.tmp",   # our naming, its writer gone (SIGKILLed)
                 tmp_path / ".bestmodel.pth.old8char.tmp"]           # the older naming, hours old
    for f in leftovers:
        f.write_bytes(b"\0" * 854_000)
    os.utime(leftovers[1], (time_.time() - 7200, time_.time() - 7200))
    mine = tmp_path / f".bestmodel.pth.{os.getpid()}-live.tmp"      # a writer still at work: not ours to remove
    mine.write_bytes(b"x")
    other = tmp_path / ".notes.txt.abcdefgh.tmp"                     # another file's: untouched
    other.write_bytes(b"x")
    assert main(["export", run, "--to", str(target), "--runs-dir", str(runs)]) == 0
    assert target.is_file() and not any(f.exists() for f in leftovers) and mine.exists() and other.exists()


def test_a_truncated_store_says_what_happened_and_how_to_go_on(trained_run, capsys):
    runs, run, _ = trained_run
    (runs / "sessions.sqlite").write_bytes(b"")  # `: > sessions.sqlite`
    for f in runs.glob("sessions.sqlite-*"):
        f.unlink()
    for argv in (["runs"], ["show", run], ["tag", run, "x"]):
        assert main([*argv, "--runs-dir", str(runs)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is empty, yet 1 run folder with weights is beside it" in err, err
        assert f"{run}/best.pth" in err and "mv " in err
    assert (runs / run / "best.pth").is_file()
