"""Float training targets (``RunConfig.float_targets``, ``n2n-tui train --float-targets``): the Noise2Noise paper's
targets for zero-mean noise, neither rounded to 8 bits nor clipped to [0, 255], on the real trainer with tiny data,
alone and with fresh pairs every epoch; inputs and validation pairs stay as they are."""
from __future__ import annotations

import pytest
import torch
from trainer_helpers import cfg

from engine.config import ConfigError, RunConfig
from engine.data import DataError, load_data, with_float_targets
from engine.noise import corrupt, corrupt_target
from engine.trainer import Trainer


@pytest.fixture(scope="module")
def photos():
    return load_data("sample", noise="gaussian:25", seed=0, n_train=32, n_val=8)


def test_a_float_target_keeps_the_noise_that_clipping_and_rounding_would_take():
    dark, light = torch.zeros(64, 3, 16, 16, dtype=torch.uint8), torch.full((64, 3, 16, 16), 255, dtype=torch.uint8)
    for clean in (dark, light):
        t = corrupt_target(clean, "gaussian:25", torch.Generator().manual_seed(1))
        assert t.dtype == torch.float32 and not torch.equal(t, t.round())
        assert (t - clean.float()).mean().abs() < 0.5           # unbiased: mean noise about 0 on the 0-255 scale
        assert (t - clean.float()).std().item() == pytest.approx(25, rel=0.02)
        clipped = corrupt(clean, "gaussian:25", torch.Generator().manual_seed(1)).float()
        assert (clipped - clean.float()).mean().abs() > 8       # what clipping does: half the noise is cut away
    # the same draws as the 8-bit target where nothing is clipped: rounding is the only difference
    grey = torch.full((8, 3, 16, 16), 128, dtype=torch.uint8)
    t = corrupt_target(grey, "gaussian:5", torch.Generator().manual_seed(2))
    assert torch.equal(t.round().clamp(0, 255).to(torch.uint8), corrupt(grey, "gaussian:5",
                                                                         torch.Generator().manual_seed(2)))


def _trained(photos, tmp_path, name, **kw):
    t = Trainer(cfg(batch_size=16, n_val=8, threads=1, noise="gaussian:25", **kw), run_dir=tmp_path / name,
                dataset=photos)
    targets = []
    t.add_sink(lambda ev: ev.kind == "step" and (ev.step - 1) % t.steps_per_epoch == 0
               and targets.append(t.dataset.train_target.clone()))
    assert t.run() == "finished"
    return t, targets


def test_the_trainer_trains_on_float_targets_with_the_same_inputs_and_validation(tiny_models, photos, tmp_path):
    t, targets = _trained(photos, tmp_path, "float", float_targets=True)
    plain, plain_targets = _trained(photos, tmp_path, "plain")
    y = targets[0]
    assert y.dtype == torch.float32 and (y < 0).any() and (y > 255).any()
    assert plain_targets[0].dtype == torch.uint8
    for key in ("train_input", "val_input", "val_target"):
        assert torch.equal(getattr(t.dataset, key), getattr(plain.dataset, key)), key
    assert t.model.swap_pairs is False and plain.model.swap_pairs is True
    assert t.best_psnr > t.psnr_noisy - 1  # it trains (a tiny model on 32 pairs: only no collapse to assert)


def test_fresh_pairs_draw_float_targets_every_epoch(tiny_models, photos, tmp_path):
    t, targets = _trained(photos, tmp_path, "fresh", float_targets=True, fresh=True, epochs=3)
    assert len(targets) == 3 and t.fresh_epochs == 2
    assert all(y.dtype == torch.float32 and (y > 255).any() for y in targets)
    assert not torch.equal(targets[1], targets[2])


def test_float_targets_need_clean_images(photos):
    with pytest.raises(ConfigError, match="float_targets: course data"):
        RunConfig(data="course:data", float_targets=True).validate()
    with pytest.raises(ConfigError, match="true or false"):
        RunConfig(float_targets=1).validate()
    from dataclasses import replace

    with pytest.raises(DataError, match="no clean images"):
        with_float_targets(replace(photos, train_clean=None), seed=0)


def test_train_float_targets_from_the_command_line_is_recorded_and_listed(tiny_models, tmp_path, capsys):
    from sessions import Store
    from tui.cli import main

    runs = str(tmp_path / "runs")
    argv = ["train", "--engine", "1", "--data", "sample", "--noise", "gaussian:25", "--subset", "32",
            "--batch-size", "8", "--n-val", "8", "--device", "cpu", "--epochs", "2", "--fresh", "--float-targets",
            "--headless", "--runs-dir", runs]
    assert main(argv) == 0
    with Store(runs) as s:
        [run] = s.list_runs()
    assert run["config"]["float_targets"] is True and run["state"] == "finished"
    capsys.readouterr()
    assert main(["runs", "--runs-dir", runs]) == 0
    assert "gaussian:25 fresh float-targets" in capsys.readouterr().out
