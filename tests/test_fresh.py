"""Fresh training pairs every epoch (``RunConfig.fresh``, engine.fresh) and ``Trainer.set_train_pairs``, on the real
trainer with tiny data: new noise on the same photo crops, new dead-leaves images, the same pairs for the same seed
(rerun, resume), validation pairs that never change, and today's fixed pairs when it is off."""
from __future__ import annotations

import time

import pytest
import torch
from trainer_helpers import Log, cfg

import engine.fresh
from engine.config import ConfigError, RunConfig
from engine.data import load_data
from engine.trainer import Trainer


@pytest.fixture(scope="module")
def mixed():
    """Half sample photo crops, half dead leaves: 32 training pairs, 8 validation pairs."""
    return load_data("sample+leaves", noise="poisson", seed=0, n_train=32, n_val=8)


class Pairs(list):
    """A sink that keeps, at each epoch's first step, the pairs, clean images and validation pairs trained with."""

    def __init__(self, trainer):
        super().__init__()
        self.t = trainer

    def __call__(self, ev):
        t = self.t
        if ev.kind == "step" and (ev.step - 1) % t.steps_per_epoch == 0:
            ds = t.dataset
            self.append({k: getattr(ds, k) if getattr(ds, k) is None else getattr(ds, k).clone()
                         for k in ("train_input", "train_target", "train_clean", "val_input", "val_target")})


def _run(data, tmp_path, name, sinks=(), **kw):
    t = Trainer(cfg(batch_size=16, n_val=8, threads=1, **kw), run_dir=tmp_path / name, dataset=data)
    pairs = Pairs(t)
    for sink in (pairs, *sinks):
        t.add_sink(sink)
    return t, pairs


def _same(a, b, key):
    return torch.equal(a[key], b[key])


def test_fresh_pairs_change_every_epoch_on_the_same_photo_crops_and_new_leaves(tiny_models, mixed, tmp_path):
    t, seen = _run(mixed, tmp_path, "a", epochs=3, fresh=True)
    assert t.run() == "finished" and len(seen) == 3 and t.fresh_epochs == 2
    leaves = mixed.train_leaves
    assert 0 < int(leaves.sum()) < len(leaves)
    assert _same(seen[0], {"train_input": mixed.train_input}, "train_input")  # epoch 1: the pairs as loaded
    for a, b in zip(seen, seen[1:]):
        for key in ("train_input", "train_target"):
            assert not _same(a, b, key), f"the same {key} in two epochs"
        assert torch.equal(a["train_clean"][~leaves], b["train_clean"][~leaves]), "photo crops must stay"
        assert (a["train_clean"][leaves] != b["train_clean"][leaves]).flatten(1).any(1).all(), "new leaves images"
        assert _same(a, b, "val_input") and _same(a, b, "val_target"), "validation pairs never change"
    last = seen[-1]  # input and target: independent draws on the same clean images
    assert not torch.equal(last["train_input"], last["train_target"])


def test_fresh_is_seeded_by_seed_and_epoch(tiny_models, mixed, tmp_path):
    _, one = _run(mixed, tmp_path, "a", epochs=3, fresh=True)
    one.t.run()
    _, two = _run(mixed, tmp_path, "b", epochs=3, fresh=True)
    two.t.run()
    _, other = _run(mixed, tmp_path, "c", epochs=2, fresh=True, seed=1)
    other.t.run()
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert all(_same(a, b, k) for k in a)
    assert not _same(one[1], other[1], "train_input")


def test_resume_mid_run_trains_on_the_same_fresh_pairs(tiny_models, poisson_data, tmp_path):
    config = dict(epochs=3, subset=64, fresh=True)
    straight, straight_log = _run(poisson_data, tmp_path, "a", **config)
    straight.add_sink(straight_log_steps := Log())
    assert straight.run() == "finished"

    b, _ = _run(poisson_data, tmp_path, "b", **config)
    b.add_sink(lambda e: b.stop() if e.kind == "step" and e.step == 10 else None)  # mid epoch 3 (4 steps each)
    assert b.run() == "stopped"
    c = Trainer(b.config, run_dir=tmp_path / "b", dataset=poisson_data, resume_from=tmp_path / "b")
    events = Log()
    c.add_sink(events)
    resumed = []
    c.add_sink(lambda e: resumed.append(c.dataset.train_input.clone()) if e.kind == "step" else None)
    assert c.run() == "finished"
    assert torch.equal(resumed[0], straight_log[2]["train_input"])
    waits = [e for e in events.of("control") if e.action == "data"]
    assert len(waits) == 1 and "epoch 3's fresh training pairs" in waits[0].detail  # drawn before it went on
    assert [e.loss for e in events.of("step")] == [e.loss for e in straight_log_steps.of("step")][10:]


def test_off_by_default_every_epoch_trains_on_the_pairs_as_loaded(tiny_models, mixed, tmp_path):
    assert RunConfig().fresh is False
    old = {k: v for k, v in RunConfig().to_dict().items() if k != "fresh"}  # a config stored before the field
    assert RunConfig.from_dict(old).validate().fresh is False
    t, seen = _run(mixed, tmp_path, "a", epochs=3)
    assert t.run() == "finished" and t.fresh_epochs == 0
    for s in seen:
        assert torch.equal(s["train_input"], mixed.train_input) and torch.equal(s["train_target"], mixed.train_target)


def test_set_train_pairs_applies_at_the_next_epoch_start_and_refuses_a_wrong_shape(tiny_models, mixed, tmp_path):
    t, seen = _run(mixed, tmp_path, "a", epochs=2)
    with pytest.raises(ValueError, match="prepare"):
        t.set_train_pairs(mixed.train_input, mixed.train_target)
    t.prepare()
    for bad in (mixed.train_input[:4], mixed.train_input.float(), "pixels"):
        with pytest.raises(ValueError) as e:
            t.set_train_pairs(bad, mixed.train_target)
        assert "\n" not in str(e.value) and "inputs must be (32, 3, 32, 32) torch.uint8" in str(e.value)
    new_x, new_y = 255 - mixed.train_input, 255 - mixed.train_target
    t.add_sink(lambda e: t.set_train_pairs(new_x, new_y) if e.kind == "step" and e.step == 1 else None)
    assert t.run() == "finished"
    assert torch.equal(seen[0]["train_input"], mixed.train_input)  # mid-epoch: epoch 1 kept its pairs
    assert torch.equal(seen[1]["train_input"], new_x) and torch.equal(seen[1]["train_target"], new_y)


def test_a_late_draw_is_waited_for_and_said(tiny_models, mixed, tmp_path, monkeypatch):
    real = engine.fresh.epoch_pairs

    def slow(*args):
        time.sleep(1.0)
        return real(*args)

    monkeypatch.setattr(engine.fresh, "epoch_pairs", slow)
    events = Log()
    t, _ = _run(mixed, tmp_path, "a", sinks=[events], epochs=2, fresh=True)
    assert t.run() == "finished"
    waits = [e for e in events.of("control") if e.action == "data"]
    assert len(waits) == 1 and waits[0].value > 0 and "slower than training an epoch" in waits[0].detail


def test_fresh_needs_clean_images(tiny_models, mixed, tmp_path):
    with pytest.raises(ConfigError, match="course data"):
        RunConfig(data="course:data", fresh=True).validate()
    with pytest.raises(ConfigError, match="true or false"):
        RunConfig(fresh="yes").validate()
    from dataclasses import replace

    t = Trainer(cfg(fresh=True, n_val=8), run_dir=tmp_path / "a", dataset=replace(mixed, train_clean=None))
    with pytest.raises(ConfigError, match="no clean images"):
        t.prepare()
