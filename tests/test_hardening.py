"""Regression tests of the hardening issue: each is named after its finding (D: data loss, T: traceback, H: hang,
W: wrong message, state or number) and failed before its fix. Real files, real processes where the process boundary
is the point (signals, pipes, exit codes)."""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pytest
import torch

from engine.config import RunConfig
from engine.trainer import Trainer, read_best_meta
from sessions import Store

torch.set_num_threads(1)


def cfg(**kw) -> RunConfig:
    base = dict(engine=1, noise="poisson", epochs=1, batch_size=8, lr=3e-3, n_val=64, eval_every=0, device="cpu")
    base.update(kw)
    return RunConfig(**base)


class Log(list):
    def __call__(self, ev):
        self.append(ev)

    def of(self, kind):
        return [e for e in self if e.kind == kind]


def wait_for(cond, timeout=20.0):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.net.state_dict().items()}


# ------------------------------------------------------------------------------------------------ data loss

def test_d1_resume_without_a_full_state_keeps_best_weights_and_history(tiny_models, poisson_data, tmp_path):
    from tui.commands.train_cmd import make_trainer

    runs = tmp_path / "runs"
    config = cfg(epochs=2, subset=128, eval_every=4)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[s.recorder(run)])
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
    wait_for(lambda: any(e.what == "state" and e.step == 31 for e in log.of("saved")))  # paused, state written
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
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[s.recorder(run)])
        t.add_sink(lambda e: t.pause() if e.kind == "step" and e.step == 2 else None)
        t.start()
        wait_for(lambda: t.state == "paused")
        t.set_lr(0.002)
        t.set_lr(0.004)
        with Store(runs) as viewer:
            wait_for(lambda: viewer.get_run(run, metrics=False, events=False)["lr"] == 0.004, timeout=5)
        t.stop()
        t.join(10)
        assert s.get_run(run)["lr"] == 0.004 and t.lr == 0.004
