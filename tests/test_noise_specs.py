"""Noise specs: ``NAME`` draws a random strength per image, ``NAME:LEVEL`` fixes it in the model's own unit, wherever
a noise is named (train, eval, data make, denoise); bad specs are one line naming the accepted forms."""
import pytest
import torch

from engine.config import ConfigError, RunConfig
from engine.data import load_data
from engine.metrics import psnr
from engine.noise import NOISES, NoiseSpec, corrupt, corrupt_float, parse_noise
from tui.parser import build_parser


@pytest.mark.parametrize("text, name, level", [
    ("gaussian:25", "gaussian", 25.0), ("poisson:30", "poisson", 30.0), ("impulse:0.1", "impulse", 0.1),
    ("pixelate:3", "pixelate", 3.0), ("blocky:0.1", "blocky", 0.1), ("gaussian", "gaussian", None),
    ("mix", "mix", None), (" gaussian:25.0 ", "gaussian", 25.0),
])
def test_spec_forms_parse(text, name, level):
    spec = parse_noise(text)
    assert spec == NoiseSpec(name, level)
    assert parse_noise(str(spec)) == spec  # the canonical string round-trips (RunConfig.noise stays a string)


@pytest.mark.parametrize("text, why", [
    ("nope", "unknown noise 'nope'"), ("gaussian:x", "must be a number in 0-255"),
    ("gaussian:-1", "in 0-255"), ("gaussian:300", "in 0-255"), ("poisson:0", "in 0.1-100000"),
    ("impulse:1.5", "in 0-1"), ("pixelate:2.5", "whole number in 1-16"), ("pixelate:0", "in 1-16"),
    ("blocky:nan", "in 0-1"), ("mix:0.5", "mix takes no level"), ("", "unknown noise ''"), ("gaussian:", "got ''"),
])
def test_bad_specs_name_the_accepted_forms(text, why):
    with pytest.raises(ValueError) as e:
        parse_noise(text)
    msg = str(e.value)
    assert why in msg and len(msg.splitlines()) == 1
    for form in ("gaussian:SIGMA (0-255)", "poisson:PHOTONS", "impulse:FRACTION", "pixelate:BLOCK", "blocky:FRACTION"):
        assert form in msg


def grey(n=16, side=64, value=0.5):
    return torch.full((n, 3, side, side), value)


def test_gaussian_25_is_sigma_25_of_255_for_every_image():
    y = corrupt_float(grey(), "gaussian:25", torch.Generator().manual_seed(0))
    per_image = (y - 0.5).flatten(1).std(1) * 255
    assert per_image.min() > 24 and per_image.max() < 26


def test_poisson_30_is_30_photons():
    y = corrupt_float(grey(value=0.4), "poisson:30", torch.Generator().manual_seed(0))
    counts = y * 30
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # whole photon counts
    assert counts.mean().item() == pytest.approx(12, rel=0.02)
    assert counts.var().item() == pytest.approx(12, rel=0.05)


def test_impulse_fraction_and_pixelate_block():
    y = corrupt_float(grey(value=0.5), "impulse:0.1", torch.Generator().manual_seed(0))
    changed = (y != 0.5).any(1).float().mean().item()
    assert changed == pytest.approx(0.1, abs=0.01)
    ramp = torch.arange(60.0).div(60).expand(4, 3, 60, 60).contiguous()
    y = corrupt_float(ramp, "pixelate:3", torch.Generator().manual_seed(0))
    runs = (y[:, 0, 0, 1:] != y[:, 0, 0, :-1]).sum(1)  # value changes along a row: one per 3-px block
    assert runs.min() >= 19 and runs.max() <= 20


def test_blocky_fraction_sets_both_parts():
    from engine.noise import _blocky_block

    assert _blocky_block(torch.tensor([0.02, 0.1, 0.2, 0.9])).tolist() == [2, 3, 4, 4]
    a = corrupt(torch.full((2, 3, 32, 32), 128, dtype=torch.uint8), "blocky:0.1", torch.Generator().manual_seed(1))
    b = corrupt(torch.full((2, 3, 32, 32), 128, dtype=torch.uint8), "blocky:0.1", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and (a != 128).any(1).float().mean().item() == pytest.approx(0.1, abs=0.04)


def test_bare_names_keep_their_random_range():
    for name in NOISES:
        a = corrupt(torch.full((8, 3, 16, 16), 100, dtype=torch.uint8), name, torch.Generator().manual_seed(2))
        assert a.shape == (8, 3, 16, 16)
    y = corrupt_float(grey(n=64, side=32), "gaussian", torch.Generator().manual_seed(0))
    sig = (y - 0.5).flatten(1).std(1) * 255
    assert sig.min() < 10 and sig.max() > 40  # sigma drawn in 0-50 per image


def test_data_sources_take_a_fixed_level():
    ds = load_data("sample", noise="gaussian:25", seed=0, n_train=8, n_val=64)
    assert ds.noise == "gaussian:25"
    assert 20.0 < psnr(ds.val_input, ds.val_target) < 21.5  # 20 log10(255 / 25) = 20.17 dB, a bit more clipped


def test_run_config_keeps_the_spec_string_and_old_runs_still_load():
    cfg = RunConfig(noise="gaussian:25", loss="l2").validate()
    assert RunConfig.from_dict(cfg.to_dict()).noise == "gaussian:25"
    old = RunConfig().to_dict()
    old.pop("loss")  # a run recorded before specs and the loss option existed
    old["noise"] = "poisson"
    assert RunConfig.from_dict(old).validate().loss is None
    with pytest.raises(ConfigError, match="noise: bad noise 'gaussian:x'"):
        RunConfig(noise="gaussian:x").validate()
    with pytest.raises(ConfigError, match="loss: must be l1 or l2"):
        RunConfig(loss="l0").validate()


def test_train_options_reach_the_model():
    from engine.trainer import Trainer
    from tui.run_args import config_from_args

    args = build_parser().parse_args(["train", "--noise", "gaussian:25.0", "--loss", "l2", "--data", "sample"])
    cfg = config_from_args(args)
    assert (cfg.noise, cfg.loss) == ("gaussian:25", "l2")
    trainer = Trainer(cfg)
    assert trainer.model.config["loss"] == "l2" and isinstance(trainer.model.criterion, torch.nn.MSELoss)
    assert Trainer(RunConfig()).model.config["loss"] == "l1"  # no option: the Model's own default
