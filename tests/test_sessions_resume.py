"""A run killed with SIGKILL mid-epoch reads ``crashed`` and ``--resume`` continues it from its last full state with
its curves intact (real processes; the concurrent viewer is in test_cli_train.py); a run killed before its first full
state restarts from step 0 keeping its best weights and its history."""
from __future__ import annotations

import json
import signal
from types import SimpleNamespace

from test_cli_train import SMALL, cli, popen, read_until
from trainer_helpers import cfg

from engine.train_state import read_best_meta
from engine.trainer import Trainer
from sessions import Recorder, Store


def test_sigkill_mid_epoch_then_resume(tmp_path):
    runs = str(tmp_path)
    proc = popen("train", *SMALL, "--epochs", "2", "--eval-every", "4", "--json", "--runs-dir", runs)
    try:  # 8 steps per epoch: wait for the epoch-1 state, then kill in the middle of epoch 2
        lines = read_until(proc, lambda d: d["event"] == "saved" and d["what"] == "state")
        assert lines[-1]["step"] == 8
        lines += read_until(proc, lambda d: d["event"] == "step" and d["step"] >= 11)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    run = lines[0]["run"]

    with Store(runs) as s:
        r = s.get_run(run)
        assert r["state"] == "crashed" and r["events"][-1]["kind"] == "crashed"
        assert r["step"] >= 8 and r["metrics"][0]["step"] == 0

    res = cli("train", "--resume", run[:-2], "--json", "--runs-dir", runs)
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out[0]["event"] == "state" and out[0]["run"] == run and "resumed from step 8" in out[0]["message"]
    assert [d["step"] for d in out if d["event"] == "step"] == list(range(9, 17))
    assert out[-1]["state"] == "finished"

    with Store(runs) as s:
        r = s.get_run(run)
    assert r["state"] == "finished" and r["step"] == 16
    steps = [m["step"] for m in r["metrics"] if m["loss"] is not None]
    assert steps == list(range(1, 17))  # the curve continues where it was: every step once, none twice
    assert [m["step"] for m in r["metrics"] if m["psnr"] is not None] == [0, 4, 8, 12, 16]
    kinds = [e["kind"] for e in r["events"]]
    assert kinds.index("crashed") < kinds.index("restart")
    assert (tmp_path / run / "best.pth").is_file()


def test_resume_without_a_full_state_keeps_best_weights_and_history(tiny_models, poisson_data, tmp_path):
    from tui.run_args import make_trainer

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
