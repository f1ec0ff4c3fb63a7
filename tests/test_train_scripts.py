"""scripts/train_mp1.py and scripts/train_mp2.py (scripts/_train.py) train the shipped weights through the product's
own Trainer: every step's learning rate is engine.schedule's, new noise reaches the steps of later epochs, a
wall-clock budget compresses the schedule and stops the run, and the files the recipe writes (--out, --curve) keep
their format. Small runs in this process, on the CPU, with narrow networks (the scripts' own width flags)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from engine.schedule import Schedule

ROOT = Path(__file__).resolve().parent.parent
CURVE_KEYS = {"step", "images", "seconds", "psnr", "psnr_noisy", "lr"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # train_mp1/2 import it as ``_train`` (python puts scripts/ first on sys.path)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def scripts(monkeypatch):
    """(``_train``, ``{1: train_mp1, 2: train_mp2}``); torch's global settings the scripts change are put back."""
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()
    monkeypatch.delitem(sys.modules, "_train", raising=False)
    train = _load("_train")
    yield train, {1: _load("train_mp1"), 2: _load("train_mp2")}
    sys.modules.pop("_train", None)
    torch.set_num_threads(threads)
    torch.set_grad_enabled(grad)


def _record_steps(monkeypatch, engine: int, clock=None) -> list:
    """Every train_step's (learning rate, sum of its inputs, sum of its targets); ``clock`` (a FakeTime) advances 1 s
    per step."""
    model = __import__(f"Miniproject_{engine}.model", fromlist=["Model"]).Model
    real, steps = model.train_step, []

    def train_step(self, inputs, targets):
        steps.append((self.learning_rate, float(inputs.double().sum()), float(targets.double().sum())))
        if clock is not None:
            clock.now += 1.0
        return real(self, inputs, targets)

    monkeypatch.setattr(model, "train_step", train_step)
    return steps


def _run(monkeypatch, module, *argv) -> int:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    return module.main(int(module.__name__[-1]), "test", module.DEFAULTS)


def test_every_documented_flag_is_still_there(scripts):
    train, _ = scripts
    common = {"--data", "--noise", "--n-train", "--n-val", "--epochs", "--renoise", "--no-renoise", "--batch-size",
              "--lr", "--warmup", "--minutes", "--evals", "--seed", "--device", "--threads", "--out", "--curve",
              "--loss", "--init", "-h", "--help"}
    for engine, extra in ((1, {"--widths"}), (2, {"--c1", "--c2", "--c3", "--k"})):
        parser = train._parser(engine, "test", {"n_train": 1, "epochs": 1, "renoise": True, "batch_size": 1,
                                                "lr": 1e-3, "evals": 1, "widths": "8", "c1": 8, "c2": 8, "c3": 8,
                                                "k": 3})
        assert set(parser._option_string_actions) == common | extra


def test_mp1_trains_on_the_trainer_schedule_with_new_noise_each_epoch(scripts, monkeypatch, tmp_path, capsys):
    train, mp = scripts
    steps = _record_steps(monkeypatch, 1)
    out, curve = tmp_path / "best.pth", tmp_path / "curve.jsonl"
    code = _run(monkeypatch, mp[1], "--n-train", "64", "--n-val", "16", "--batch-size", "16", "--epochs", "3",
                "--evals", "2", "--warmup", "0.1", "--widths", "8,16", "--device", "cpu", "--threads", "1",
                "--out", str(out), "--curve", str(curve))
    printed = capsys.readouterr().out
    assert code == 0, printed

    total, warmup = 12, 2  # 3 epochs of 4 steps; the steps whose progress is under 0.1
    schedule = Schedule("cosine", warmup, decay_to=0.01)
    assert [s[0] for s in steps] == pytest.approx([2e-3 * schedule.factor(t, total) for t in range(total)])
    for side in (1, 2):  # the inputs and the targets of every epoch: a new draw of both noisy versions
        per_epoch = [sum(s[side] for s in steps[e * 4:(e + 1) * 4]) for e in range(3)]
        assert len(set(per_epoch)) == 3, f"epochs with the same {('inputs', 'targets')[side - 1]}: {per_epoch}"
    assert "2 new noise draws over 3 epochs" in printed

    rows = [json.loads(line) for line in curve.read_text().splitlines()]
    assert all(set(r) == CURVE_KEYS for r in rows)
    assert [r["step"] for r in rows] == [4, 6, 8, 12]  # every epoch end and every total / --evals steps
    assert rows[-1]["images"] == 3 * 64 and rows[-1]["lr"] == pytest.approx(steps[-1][0])
    from Miniproject_1.model import Model

    fresh = Model(device="cpu")
    fresh.load_pretrained_model(out)
    assert fresh.config["widths"] == [8, 16]
    assert f"reloaded {out} in a fresh Model()" in printed.splitlines()[-1]


def test_mp2_budget_compresses_the_schedule_and_ends_decayed(scripts, monkeypatch, tmp_path, capsys):
    train, mp = scripts

    class FakeTime:
        now = 1000.0

        def time(self):
            return self.now

    clock = FakeTime()
    monkeypatch.setattr(train, "time", clock)
    steps = _record_steps(monkeypatch, 2, clock)
    out, curve = tmp_path / "best.pth", tmp_path / "curve.jsonl"
    code = _run(monkeypatch, mp[2], "--n-train", "64", "--n-val", "16", "--batch-size", "16", "--epochs", "10",
                "--evals", "4", "--warmup", "0", "--minutes", "0.25", "--c1", "8", "--c2", "8", "--c3", "8",
                "--no-renoise", "--device", "cpu", "--threads", "1", "--out", str(out), "--curve", str(curve))
    printed = capsys.readouterr().out
    assert code == 0, printed

    total, budget = 40, 15  # 10 epochs of 4 steps planned; 15 s of the fake clock, one second per step
    assert len(steps) == budget, "the run stops after the step that spends the budget"
    schedule = Schedule("cosine", 0, decay_to=0.01)
    # step t runs when t seconds have passed: the schedule is where the time says, ahead of the step count
    expected = [2e-3 * schedule.factor(max(t, t / budget * total), total) for t in range(budget)]
    assert [s[0] for s in steps] == pytest.approx(expected, rel=1e-6)
    assert steps[-1][0] < 0.05 * 2e-3, "a run the budget ends still ends with a decayed rate"

    rows = [json.loads(line) for line in curve.read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8, 10, 12, budget], "the weights the run ended with are evaluated"
    assert f"eval at step {budget} (epoch 4, {budget * 16} images" in printed
    assert f"reloaded {out} in a fresh Model()" in printed.splitlines()[-1]



def test_init_starts_from_the_given_weights_widens_a_narrower_net_and_refuses_another(scripts, monkeypatch, tmp_path,
                                                                                        capsys):
    _, mp = scripts
    from Miniproject_1.model import Model

    torch.manual_seed(123)  # not the weights the run's own seed would draw
    start = Model(device="cpu", widths=(8, 16))
    for prm in start.net.parameters():  # a trained-looking network: the head is not zero
        torch.nn.init.normal_(prm, std=0.2)
    init = tmp_path / "start.pth"
    start.save(init)
    first = []
    real = Model.train_step
    probe = torch.rand(2, 3, 32, 32)

    def train_step(self, inputs, targets):
        if not first:
            with torch.no_grad():
                first.append(([p.detach().clone() for p in self.net.parameters()], self.net(probe)))
        return real(self, inputs, targets)

    monkeypatch.setattr(Model, "train_step", train_step)
    common = ("--n-train", "32", "--n-val", "16", "--batch-size", "16", "--epochs", "1", "--evals", "1",
              "--warmup", "0", "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "best.pth"))
    assert _run(monkeypatch, mp[1], *common, "--widths", "8,16", "--init", str(init)) == 0
    assert all(torch.equal(a, b) for a, b in zip(first[0][0], start.net.parameters()))

    # a wider recipe of the same depth starts from the same function, with more units
    first.clear()
    assert _run(monkeypatch, mp[1], *common, "--widths", "12,24", "--init", str(init)) == 0
    assert "widened into [12, 24]" in capsys.readouterr().out
    weights, out = first[0]
    assert weights[0].shape[0] == 12
    with torch.no_grad():
        assert torch.allclose(out, start.net(probe), atol=1e-5)

    for widths, init_path, says in (("8,8", init, "the recipe asks for"), ("8,16,24", init, "the recipe asks for"),
                                    ("8,16", tmp_path / "none.pth", "no such checkpoint")):
        with pytest.raises(SystemExit) as stop:
            _run(monkeypatch, mp[1], *common, "--widths", widths, "--init", str(init_path))
        assert stop.value.code == 2
        line = capsys.readouterr().err.splitlines()[-1]
        assert line.startswith(f"train_mp1.py: error: --init: {init_path}") and says in line, line
