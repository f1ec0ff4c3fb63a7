"""The trainer: a run of each engine, live control (pause, resume, stop, set_lr, save_best), the explosion guard and
its rollback target, broken sinks, full states written on a time basis, and exact resumption from a full training
state (a tampered one refused). In-process, tiny networks, a few seconds each."""
from __future__ import annotations

import math
import threading
import time

import pytest
import torch
from trainer_helpers import Log, cfg
from waiting import wait_until

from engine.events import ControlEvent, EvalEvent, SavedEvent, StateEvent, StepEvent
from engine.train_state import CheckpointError, read_best_meta
from engine.trainer import Trainer

torch.set_num_threads(1)


def test_engine1_run_finishes_with_rising_psnr(tiny_models, poisson_data, tmp_path):
    log = Log()
    t = Trainer(cfg(epochs=4, eval_every=16), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    assert t.state == "idle" and t.best_psnr is None
    assert t.run() == "finished" and t.state == "finished"

    assert isinstance(log[0], StateEvent) and log[0].state == "running" and log[0].run == t.run_id
    assert isinstance(log[-1], StateEvent) and log[-1].state == "finished"
    steps = log.of("step")
    assert [e.step for e in steps] == list(range(1, 129)) and t.total_steps == 128
    assert steps[0].epoch == 1 and steps[-1].epoch == 4 and all(e.total_steps == 128 for e in steps)
    assert all(e.img_per_s > 0 and e.lr == 3e-3 for e in steps)
    evals = log.of("eval")
    assert [e.step for e in evals] == [0, 16, 32, 48, 64, 80, 96, 112, 128]
    assert evals[-1].psnr > evals[0].psnr + 2.0, [round(e.psnr, 2) for e in evals]
    assert t.best_psnr == max(e.psnr for e in evals) and t.best_psnr == evals[-1].best_psnr
    for e in evals:  # six fixed validation images, uint8
        for patch in (e.noisy, e.denoised, e.clean):
            assert patch.dtype == torch.uint8 and patch.shape == (6, 3, 32, 32)
        assert torch.equal(e.noisy, evals[0].noisy) and torch.equal(e.clean, evals[0].clean)
    assert "noisy" not in evals[0].to_dict()
    # the best weights on disk, with their PSNR; a full state at each epoch end
    assert (tmp_path / "best.pth").is_file() and read_best_meta(tmp_path)["psnr"] == t.best_psnr
    states = [e for e in log.of("saved") if e.what == "state"]
    assert [e.step for e in states] == [32, 64, 96, 128]


def test_engine2_run_finishes_with_rising_psnr(poisson_data, tmp_path):
    pytest.importorskip("Miniproject_2.model")
    log = Log()
    t = Trainer(cfg(engine=2, epochs=2, subset=128, eval_every=8, lr=3e-3), run_dir=tmp_path,
                dataset=poisson_data, sinks=[log])
    assert t.run() == "finished", t.message
    evals = log.of("eval")
    assert len(log.of("step")) == 32
    assert evals[-1].psnr > evals[0].psnr + 1.0, [round(e.psnr, 2) for e in evals]
    assert (tmp_path / "best.pth").is_file()
    from engine.models import new_model

    fresh = new_model(2, "cpu")  # the saved best weights load in a fresh Model
    fresh.load_pretrained_model(tmp_path / "best.pth")


def test_pause_stops_steps_until_resume(tiny_models, poisson_data, tmp_path):
    log = Log()
    t = Trainer(cfg(epochs=2), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    t.add_sink(lambda e: t.pause() if e.kind == "step" and e.step == 3 else None)
    t.start()
    wait_until(lambda: t.state == "paused")
    assert t.step == 3
    time.sleep(0.4)
    assert t.step == 3 and len(log.of("step")) == 3
    assert (tmp_path / "state.pth").is_file()  # a full state is written on pause
    t.resume()
    t.join(30)
    assert t.state == "finished" and t.step == 64
    actions = [e.action for e in log.of("control")]
    assert actions == ["threads", "pause", "resume"]   # first what the thread count is (engine.threads)
    states = [e.state for e in log.of("state")]
    assert states == ["running", "paused", "running", "finished"]


def test_set_lr_takes_effect_at_next_step(tiny_models, poisson_data, tmp_path):
    log = Log()
    t = Trainer(cfg(subset=64), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    t.add_sink(lambda e: t.set_lr(5e-4) if e.kind == "step" and e.step == 2 else None)
    t.run()
    lrs = [(e.step, e.lr) for e in log.of("step")]
    assert lrs[:3] == [(1, 3e-3), (2, 3e-3), (3, 5e-4)] and all(lr == 5e-4 for _, lr in lrs[2:])
    [ctl] = [e for e in log.of("control") if e.action != "threads"]
    assert ctl.action == "lr" and ctl.step == 2 and "0.003 -> 0.0005" in ctl.detail
    assert log.index(ctl) < next(i for i, e in enumerate(log) if e.kind == "step" and e.step == 3)
    assert t.lr == 5e-4 and t.model.learning_rate == 5e-4
    for bad in (0, -1e-3, float("nan"), float("inf"), "fast", None):
        with pytest.raises(ValueError):
            t.set_lr(bad)


def test_stop_ends_the_thread_promptly_and_saves_state(tiny_models, poisson_data, tmp_path):
    log = Log()
    t = Trainer(cfg(epochs=50), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    t.start()
    wait_until(lambda: t.step >= 3)
    t0 = time.time()
    t.stop()
    t.join(10)
    assert time.time() - t0 < 5 and t.state == "stopped"
    assert not any(th.name == f"trainer-{t.run_id}" for th in threading.enumerate())
    assert log[-1].kind == "state" and log[-1].state == "stopped"
    assert log.of("control")[-1].action == "stop"
    state = torch.load(tmp_path / "state.pth", weights_only=True)
    assert state["step"] == t.step
    assert (tmp_path / "best.pth").is_file()


def test_stop_wakes_a_paused_run(tiny_models, poisson_data, tmp_path):
    t = Trainer(cfg(epochs=50), run_dir=tmp_path, dataset=poisson_data)
    t.pause()  # before it starts: it pauses before the first step
    t.start()
    wait_until(lambda: t.state == "paused")
    assert t.step == 0
    t.stop()
    t.join(5)
    assert t.state == "stopped"


def test_full_state_is_written_on_a_time_basis(tiny_models, poisson_data, tmp_path, monkeypatch):
    import engine.trainer

    monkeypatch.setattr(engine.trainer, "STATE_SECONDS", 0.0)  # every step is "a few minutes later"
    log = Log()
    t = Trainer(cfg(subset=64), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    assert t.run() == "finished"
    states = [e.step for e in log.of("saved") if e.what == "state"]
    assert states == list(range(1, 9)), states  # not only at the epoch end (step 8)
    state = torch.load(tmp_path / "state.pth", weights_only=True)
    assert state["step"] == 8 and state["good"]["step"] <= 8


def test_nan_loss_pauses_and_rolls_back(tiny_models, poisson_data, tmp_path, monkeypatch):
    import engine.trainer

    monkeypatch.setattr(engine.trainer, "SNAPSHOT_SECONDS", 1e9)  # only evaluations take snapshots here
    log = Log()
    t = Trainer(cfg(epochs=2, eval_every=5), run_dir=tmp_path, dataset=poisson_data, sinks=[log])
    good = {}

    def keep_step5(e):
        if e.kind == "eval" and e.step == 5:
            good.update({k: v.clone() for k, v in t.model.net.state_dict().items()})

    t.add_sink(keep_step5)
    real_step = t.model.train_step

    def poisoned(x, y):
        loss = real_step(x, y)
        if t.step + 1 == 7:  # the 7th step blows up: weights become NaN
            with torch.no_grad():
                for p in t.model.net.parameters():
                    p.fill_(float("nan"))
            return float("nan")
        return loss

    t.model.train_step = poisoned
    t.start()
    wait_until(lambda: t.state == "paused")
    assert t.step == 7 and "nan" in t.message and "rolled back to the weights of step 5" in t.message
    guard = [e for e in log.of("control") if e.action == "guard"]
    assert len(guard) == 1 and guard[0].step == 7
    for k, v in t.model.net.state_dict().items():  # rolled back to the last good weights (step 5)
        assert torch.equal(v, good[k]), k
    t.set_lr(1e-3)
    t.resume()
    t.join(30)
    assert t.state == "finished" and t.lr == 1e-3
    losses = [e.loss for e in log.of("step")]
    assert math.isnan(losses[6]) and all(math.isfinite(v) for i, v in enumerate(losses) if i != 6)
    assert all(torch.isfinite(p).all() for p in t.model.net.parameters())


def test_exploding_loss_triggers_the_guard(tiny_models, poisson_data, tmp_path):
    t = Trainer(cfg(subset=256), run_dir=tmp_path, dataset=poisson_data)
    losses = iter([0.05] * 25 + [0.9])

    t.model.train_step = lambda x, y: next(losses)
    t.start()
    wait_until(lambda: t.state == "paused")
    assert t.step == 26 and "over 10x its recent median" in t.message
    t.stop()
    t.join(5)


def test_rollback_target_is_never_weights_a_bad_step_produced(tiny_models, poisson_data, tmp_path, monkeypatch):
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
            before_bad.update(_weights(t))
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
    now = _weights(t)
    assert all(torch.equal(now[k], before_bad[k]) for k in now)  # the weights step 30's loss judged good
    state = torch.load(tmp_path / "state.pth", weights_only=True)  # the pause wrote the rolled-back weights
    assert all(torch.equal(state["model"]["model"][k], before_bad[k]) for k in before_bad)
    t.set_lr(1e-3)
    t.resume()
    t.join(30)
    assert t.state == "finished"
    assert len([e for e in log.of("control") if e.action == "guard"]) == 1  # it does not fire again on resume


def test_a_broken_sink_does_not_kill_training(tiny_models, poisson_data, tmp_path):
    log = Log()

    def broken(e):
        raise RuntimeError("boom")

    t = Trainer(cfg(subset=32), run_dir=tmp_path, dataset=poisson_data, sinks=[broken, log])
    assert t.run() == "finished"
    errors = [e for e in log.of("control") if e.action == "error"]
    assert len(errors) == 1 and "boom" in errors[0].detail  # said once, not on every event
    assert len(log.of("step")) == 4


def test_failure_ends_in_failed_state_with_message(tiny_models, poisson_data, tmp_path):
    log = Log()
    t = Trainer(cfg(subset=32), run_dir=tmp_path, dataset=poisson_data, sinks=[log])

    def bad_step(x, y):
        raise RuntimeError("out of memory")

    t.model.train_step = bad_step
    assert t.run() == "failed"
    assert log[-1].state == "failed" and "out of memory" in log[-1].message


def test_save_best_writes_a_grader_ready_file(tiny_models, poisson_data, tmp_path):
    log = Log()
    t = Trainer(cfg(subset=64, eval_every=4), run_dir=tmp_path / "run", dataset=poisson_data, sinks=[log])
    with pytest.raises(ValueError):
        t.save_best(tmp_path / "x.pth")  # nothing evaluated yet
    t.run()
    target = tmp_path / "bestmodel.pth"
    path, best = t.save_best(target)
    assert path == target and best == t.best_psnr
    from engine.evaluate import predict_all
    from engine.metrics import psnr
    from Miniproject_1.model import Model

    fresh = Model(device="cpu")  # default widths: it rebuilds to the checkpoint's
    fresh.load_pretrained_model(target)
    assert psnr(predict_all(fresh, poisson_data.val_input), poisson_data.val_target) == pytest.approx(best, abs=1e-4)
    assert [e.what for e in log.of("saved")][-1] == "export" and log.of("control")[-1].action == "save"
    before = target.read_bytes()
    with pytest.raises(OSError, match="does not exist"):
        t.save_best(tmp_path / "missing" / "bestmodel.pth")
    assert target.read_bytes() == before


def _weights(t):
    return {k: v.clone() for k, v in t.model.net.state_dict().items()}


def test_resume_continues_exactly_where_it_stopped(tiny_models, poisson_data, tmp_path):
    config = cfg(epochs=2, subset=128, eval_every=6, threads=1)  # bit-exact: one thread count throughout
    straight = Log()
    a = Trainer(config, run_dir=tmp_path / "a", dataset=poisson_data, sinks=[straight])
    a.run()

    first = Log()
    b = Trainer(config, run_dir=tmp_path / "b", dataset=poisson_data, sinks=[first])
    b.add_sink(lambda e: b.stop() if e.kind == "step" and e.step == 21 else None)  # mid epoch 2
    assert b.run() == "stopped" and b.step == 21
    second = Log()
    c = Trainer(config, run_dir=tmp_path / "b", dataset=poisson_data, sinks=[second], resume_from=tmp_path / "b")
    assert c.step == 21 and c.epoch == 2 and c.best_psnr == b.best_psnr
    assert c.run() == "finished"
    assert second.of("state")[0].message.startswith("resumed from step 21")
    assert [e.step for e in second.of("step")] == list(range(22, 33))
    # the same losses and the same final weights as the run that was never interrupted
    assert [e.loss for e in second.of("step")] == [e.loss for e in straight.of("step")][21:]
    wa, wc = _weights(a), _weights(c)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    assert c.best_psnr == a.best_psnr


def test_resume_refuses_a_corrupt_or_foreign_state(tiny_models, poisson_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable training state"):
        Trainer(cfg(), run_dir=run, dataset=poisson_data, resume_from=run)
    assert (run / "state.pth").read_bytes() == b"not a checkpoint at all"  # never overwritten
    torch.save({"format": "something else"}, run / "state.pth")
    with pytest.raises(CheckpointError, match="not an n2n-tui training state"):
        Trainer(cfg(), run_dir=run, dataset=poisson_data, resume_from=run)
    t = Trainer(cfg(subset=16), run_dir=tmp_path / "ok", dataset=poisson_data)
    t.run()
    with pytest.raises(CheckpointError, match="engine 1"):
        Trainer(cfg(engine=2), run_dir=tmp_path / "ok", dataset=poisson_data, resume_from=tmp_path / "ok")


class _NotAState:  # a Python object: what a tampered state.pth might hold
    pass


def test_a_tampered_training_state_is_one_line_naming_the_file(trained_run, poisson_data):
    runs, run, t = trained_run
    state = runs / run / "state.pth"
    torch.save({"format": "n2n-tui/train-state", "evil": _NotAState()}, state)
    with pytest.raises(CheckpointError) as e:
        Trainer(t.config, run_dir=runs / run, dataset=poisson_data, resume_from=runs / run)
    msg = str(e.value)
    assert msg == (f"{state}: not a readable training state (it holds Python objects besides tensors and plain "
                   "values, so n2n-tui did not write it; refused unread)"), msg


def test_events_are_plain_and_json_ready(tiny_models, poisson_data, tmp_path):
    import json

    from engine.headless import event_dict

    log = Log()
    Trainer(cfg(subset=16), run_dir=tmp_path, dataset=poisson_data, sinks=[log]).run()
    kinds = {type(e) for e in log}
    assert kinds == {StateEvent, StepEvent, EvalEvent, SavedEvent, ControlEvent}   # control: the thread count
    for e in log:
        json.loads(json.dumps(event_dict(e)))
    assert event_dict(StepEvent("r", 1, 1, float("nan"), 1e-3, 1.0))["loss"] is None
    assert ControlEvent("r", "lr").to_dict()["event"] == "control"


def test_engine2_resume_continues_exactly(poisson_data, tmp_path):
    pytest.importorskip("Miniproject_2.model")
    config = cfg(engine=2, epochs=2, subset=64, eval_every=0)
    straight = Log()
    a = Trainer(config, run_dir=tmp_path / "a", dataset=poisson_data, sinks=[straight])
    a.run()
    b = Trainer(config, run_dir=tmp_path / "b", dataset=poisson_data)
    b.add_sink(lambda e: b.stop() if e.kind == "step" and e.step == 11 else None)
    assert b.run() == "stopped"
    second = Log()
    c = Trainer(config, run_dir=tmp_path / "b", dataset=poisson_data, sinks=[second], resume_from=tmp_path / "b")
    assert c.run() == "finished"
    assert [e.step for e in second.of("step")] == list(range(12, 17))
    assert [e.loss for e in second.of("step")] == pytest.approx([e.loss for e in straight.of("step")][11:], rel=1e-5)
