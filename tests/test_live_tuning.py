"""Live tweaking beyond the learning rate: each Model's declared hyper-parameters reach its optimizer at the next
step (both engines), bad names and values are refused, schedules equal their closed forms (PyTorch's schedulers),
a learning rate set by hand rescales the rest of a schedule, a warmup longer than the run is refused, a resumed run
keeps the live values, the store keeps their history, and the dashboard's `h` edits them."""
from __future__ import annotations

import asyncio
import math

import pytest
import torch

from engine.config import RunConfig
from engine.schedule import Schedule
from engine.trainer import Trainer
from sessions.handle import LocalRun

torch.set_num_threads(1)

CHANGES = {"lr": 2.5e-3, "weight_decay": 1e-4, "batch_size": 4, "beta1": 0.8, "beta2": 0.95, "grad_clip": 0.5}


def cfg(**kw) -> RunConfig:
    base = dict(engine=1, noise="poisson", epochs=1, batch_size=8, lr=1e-3, n_val=16, eval_every=0, device="cpu",
                subset=64)
    base.update(kw)
    return RunConfig(**base)


def optimizer_view(model) -> dict:
    """What the optimizer (and the step) will actually use, read from the optimizer itself, not from the Model's
    bookkeeping."""
    opt = model.optimizer
    if hasattr(opt, "param_groups"):  # torch.optim.Adam (Miniproject_1)
        g = opt.param_groups[0]
        return {"lr": g["lr"], "weight_decay": g["weight_decay"], "beta1": g["betas"][0], "beta2": g["betas"][1],
                "grad_clip": model.grad_clip}
    return {"lr": opt.lr, "weight_decay": opt.weight_decay, "beta1": opt.betas[0], "beta2": opt.betas[1],
            "grad_clip": model.grad_clip}


@pytest.mark.parametrize("engine", [1, 2])
def test_each_live_hyperparameter_reaches_the_optimizer_at_the_next_step(engine, tiny_models, poisson_data,
                                                                        tmp_path):
    t = Trainer(cfg(engine=engine, epochs=2), run_dir=tmp_path, dataset=poisson_data)
    seen = []  # (step about to run, optimizer view, batch size of that step)
    real = t.model.train_step

    def step(x, y):
        seen.append((t.step + 1, optimizer_view(t.model), len(x)))
        return real(x, y)

    t.model.train_step = step
    t.add_sink(lambda e: [t.set_hyperparameter(k, v) for k, v in CHANGES.items()]
               if e.kind == "step" and e.step == 3 else None)
    assert t.run() == "finished", t.message
    before, after = dict(zip(("step", "view", "batch"), seen[2])), dict(zip(("step", "view", "batch"), seen[3]))
    assert before["step"] == 3 and after["step"] == 4
    assert before["view"]["beta2"] != CHANGES["beta2"] and before["batch"] == 8
    for name in ("lr", "weight_decay", "beta1", "beta2", "grad_clip"):
        assert after["view"][name] == pytest.approx(CHANGES[name]), name
    assert after["batch"] == 4 and t.batch_size == 4
    # every pair still seen exactly once per epoch, and the run's length follows the new batch size
    assert t.step == 3 + math.ceil((64 - 24) / 4) + math.ceil(64 / 4)
    assert t.total_steps == t.step


def test_batch_size_change_keeps_each_epoch_a_permutation(tiny_models, poisson_data, tmp_path):
    t = Trainer(cfg(epochs=2), run_dir=tmp_path, dataset=poisson_data)
    seen = []
    real = t.model.train_step

    def step(x, y):
        seen.append(x.clone())
        return real(x, y)

    t.model.train_step = step
    t.add_sink(lambda e: t.set_hyperparameter("batch_size", 5) if e.kind == "step" and e.step == 2 else None)
    t.run()
    first_epoch = torch.cat(seen)[:64]
    data = t.dataset.train_input[:64]
    assert sorted(first_epoch.flatten(1).sum(1).tolist()) == sorted(data.flatten(1).sum(1).tolist())


@pytest.mark.parametrize("name, value, needle", [
    ("momentum", 0.9, "unknown hyper-parameter 'momentum'"), ("lr", 0, "lr must be in (0"),
    ("lr", -1e-3, "lr must be in (0"), ("beta1", 1.0, "beta1 must be in [0"), ("beta2", 2, "beta2 must be in"),
    ("batch_size", 2.5, "batch_size must be an integer"), ("batch_size", 0, "batch_size must be in [1"),
    ("weight_decay", "lots", "weight_decay must be a number"), ("grad_clip", -1, "grad_clip must be in [0"),
])
@pytest.mark.parametrize("engine", [1, 2])
def test_bad_names_and_values_are_refused(engine, name, value, needle, tiny_models, poisson_data, tmp_path):
    t = Trainer(cfg(engine=engine), run_dir=tmp_path, dataset=poisson_data)
    before = t.hyperparameters()
    with pytest.raises(ValueError) as e:
        t.set_hyperparameter(name, value)
    assert needle in str(e.value)
    assert t.hyperparameters() == before


def test_ctl_set_refuses_bad_names_and_values_in_one_line():
    from sessions.protocol import ProtocolError, parse_command

    assert parse_command(b'{"id": 1, "cmd": "set", "name": "beta2", "value": 0.999}')["name"] == "beta2"
    for raw, needle in ((b'{"id": 2, "cmd": "set", "value": 1}', "name must be"),
                        (b'{"id": 3, "cmd": "set", "name": "lr", "value": "x"}', "value must be a number")):
        with pytest.raises(ProtocolError, match=needle) as e:
            parse_command(raw)
        assert e.value.msg_id in (2, 3)


# -------------------------------------------------------------------------------------------------- schedules

def torch_rates(make, steps: int, base: float) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kind", ["cosine", "step", "onecycle", "constant"])
def test_schedules_equal_pytorchs_step_by_step(kind):
    from torch.optim import lr_scheduler as ls

    base, total = 2e-3, 200
    if kind == "cosine":
        ref = torch_rates(lambda o: ls.CosineAnnealingLR(o, T_max=total, eta_min=base * 0.05), total, base)
        s = Schedule("cosine", decay_to=0.05)
    elif kind == "step":
        ref = torch_rates(lambda o: ls.StepLR(o, step_size=30, gamma=0.7), total, base)
        s = Schedule("step", step_every=30, gamma=0.7)
    elif kind == "onecycle":
        ref = torch_rates(lambda o: ls.OneCycleLR(o, max_lr=base, total_steps=total, pct_start=0.25, div_factor=25,
                                                  final_div_factor=1 / (25 * 0.01)), total, base)
        s = Schedule("onecycle", warmup=50, decay_to=0.01)
    else:
        ref = [base] * total
        s = Schedule("constant")
    ours = [base * s.factor(t, total) for t in range(total)]
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_warmup_is_linear_then_the_schedule():
    s = Schedule("cosine", warmup=10, decay_to=0.1)
    assert [s.factor(t, 110) for t in range(10)] == pytest.approx([(t + 1) / 10 for t in range(10)])
    assert s.factor(10, 110) == pytest.approx(1.0)
    assert s.factor(60, 110) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine


def test_the_trainer_follows_the_schedule_and_a_manual_change_rescales_the_rest(tiny_models, poisson_data, tmp_path):
    t = Trainer(cfg(epochs=4, lr=4e-3, schedule="cosine", warmup=4, decay_to=0.1), run_dir=tmp_path,
                dataset=poisson_data)
    rates = {}
    t.add_sink(lambda e: rates.__setitem__(e.step, e.lr) if e.kind == "step" else None)
    t.add_sink(lambda e: t.set_lr(1e-3) if e.kind == "step" and e.step == 12 else None)
    assert t.run() == "finished"
    total, s = 32, Schedule("cosine", warmup=4, decay_to=0.1)
    for step in range(1, 13):  # step k ran at the schedule's rate for index k - 1
        assert rates[step] == pytest.approx(4e-3 * s.factor(step - 1, total)), step
    assert rates[13] == pytest.approx(1e-3)  # the rate set by hand, at once
    scale = 1e-3 / (4e-3 * s.factor(12, total))
    for step in range(14, 33):  # ... and the rest of the cosine continues from it
        assert rates[step] == pytest.approx(4e-3 * scale * s.factor(step - 1, total)), step


def test_the_step_schedule_decays_once_an_epoch_by_default(tiny_models, poisson_data, tmp_path):
    t = Trainer(cfg(epochs=3, lr=4e-3, schedule="step", gamma=0.5), run_dir=tmp_path, dataset=poisson_data)
    rates = {}
    t.add_sink(lambda e: rates.__setitem__(e.step, e.lr) if e.kind == "step" else None)
    assert t.run() == "finished"
    per = t.steps_per_epoch
    assert per > 1 and len(rates) == 3 * per
    assert {step: lr for step, lr in rates.items()} == pytest.approx(
        {step: 4e-3 * 0.5 ** ((step - 1) // per) for step in rates})


def test_the_step_schedule_decays_every_step_every_steps_when_given():
    s = Schedule("step", step_every=3, gamma=0.5)
    assert [s.factor(t, 100, epoch_steps=10) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    s = Schedule("step", gamma=0.5)  # step_every 0: one epoch
    assert [s.factor(t, 100, epoch_steps=2) for t in range(5)] == [1, 1, 0.5, 0.5, 0.25]


def test_a_warmup_longer_than_the_run_is_refused_naming_both(tmp_path, capsys):
    from tui.cli import main

    argv = ["train", "--headless", "--engine", "1", "--data", "sample", "--subset", "64", "--batch-size", "8",
            "--n-val", "16", "--epochs", "2", "--warmup", "500", "--runs-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("n2n-tui: error: warmup: 500 steps, but the whole run is 16 steps (2 epochs of 8): the learning "
                   "rate would never reach its base; give a shorter --warmup"), err


# ----------------------------------------------------------------------------- kept across a resume, recorded, edited

def test_resume_restores_the_live_values_not_the_launch_values(tiny_models, poisson_data, tmp_path):
    config = cfg(epochs=3, schedule="cosine", lr=3e-3)
    a = Trainer(config, run_dir=tmp_path, dataset=poisson_data)
    a.add_sink(lambda e: [a.set_hyperparameter("beta2", 0.95), a.set_hyperparameter("batch_size", 4),
                          a.set_hyperparameter("grad_clip", 0.25), a.set_lr(1e-3)]
               if e.kind == "step" and e.step == 2 else None)
    a.add_sink(lambda e: a.stop() if e.kind == "step" and e.step == 5 else None)
    assert a.run() == "stopped"
    b = Trainer(config, run_dir=tmp_path, dataset=poisson_data, resume_from=tmp_path)
    live = {k: v["value"] for k, v in b.hyperparameters().items()}
    assert live["beta2"] == 0.95 and live["batch_size"] == 4 and live["grad_clip"] == 0.25
    assert b.lr_scale == pytest.approx(a.lr_scale) and b.batch_size == 4
    steps = []
    b.add_sink(lambda e: steps.append(e) if e.kind == "step" else None)
    assert b.run() == "finished"
    assert steps[0].lr == pytest.approx(3e-3 * a.lr_scale * b.schedule.factor(5, b.total_steps))


def test_the_settings_history_is_in_the_store(tiny_models, poisson_data, tmp_path):
    from types import SimpleNamespace

    import engine.data
    from tui.run_args import make_trainer

    args = SimpleNamespace(runs_dir=str(tmp_path / "runs"), resume=None, engine=1, data="sample", noise="poisson",
                           epochs=1, batch_size=8, lr=1e-3, subset=64, n_val=16, eval_every=0, seed=0, device="cpu")
    orig = engine.data.load_sample
    engine.data.load_sample = lambda *a, **k: poisson_data
    try:
        t, store = make_trainer(args)
        t.add_sink(lambda e: t.set_hyperparameter("beta2", 0.97) if e.kind == "step" and e.step == 3 else None)
        t.run()
        history = store.settings(t.run_id)
        store.close()
    finally:
        engine.data.load_sample = orig
    beta2 = [(h["step"], h["value"]) for h in history if h["name"] == "beta2"]
    assert beta2 == [(0, pytest.approx(0.99)), (3, pytest.approx(0.97))]  # at the start, then the change


def test_h_edits_the_live_hyperparameters_of_a_run(tiny_models, poisson_data, tmp_path):
    from fakes import train_args
    from waiting import wait_for

    from sessions import Recorder, Store
    from tui.app import N2NApp
    from tui.screens.hyper import HyperScreen

    store = Store(tmp_path / "runs")
    config = cfg(epochs=200)
    run = store.new_run(config)
    t = Trainer(config, run_id=run, run_dir=store.run_dir(run), dataset=poisson_data, sinks=[Recorder(store, run)])

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=store, trainer=LocalRun(t, store))
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: t.step > 2)
            await pilot.press("h")
            assert isinstance(app.screen, HyperScreen)
            box = app.screen.query_one("#hyper-beta2")
            assert box.value == "0.99"
            box.value = "1.5"  # out of range: said inline, nothing applied
            await pilot.press("enter")
            assert isinstance(app.screen, HyperScreen) and "beta2: must be in" in str(
                app.screen.query_one("#hyper-message").render())
            box.value = "0.995"
            app.screen.query_one("#hyper-grad_clip").value = "1"
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: t.model.hyperparameters()["beta2"] == 0.995)
            assert t.model.grad_clip == 1.0
            t.stop()
            assert await wait_for(pilot, lambda: t.state == "stopped")
            await pilot.press("q")

    asyncio.run(go())
    names = [h["name"] for h in store.settings(run) if h["step"] > 0]
    assert sorted(names) == ["beta2", "grad_clip"]
    store.close()
