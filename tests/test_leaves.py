"""The dead-leaves source: seeded, shaped like the course data, images (not noise), mixtures and their specs."""
import pytest
import torch

from engine.data import DataError, load_data, parse_sources, parse_spec, shares
from engine.leaves import leaves_crops
from engine.metrics import psnr


@pytest.fixture(scope="module")
def crops():
    return leaves_crops(300, torch.Generator().manual_seed(0))


def test_shapes_dtype_and_seeding(crops):
    assert crops.shape == (300, 3, 32, 32) and crops.dtype == torch.uint8
    assert torch.equal(crops, leaves_crops(300, torch.Generator().manual_seed(0)))
    assert not torch.equal(crops, leaves_crops(300, torch.Generator().manual_seed(1)))


def test_statistics_are_images_not_noise(crops):
    f = crops.float() / 255
    # neighbouring pixels are strongly correlated (flat regions)...
    a, b = f[..., :, :-1].flatten(), f[..., :, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.85
    # ...with edges: some neighbours differ a lot
    jumps = (f[..., :, 1:] - f[..., :, :-1]).abs().amax(1)
    assert (jumps > 0.2).float().mean() > 0.01
    # colours and brightness vary between and within crops
    assert f.mean((2, 3)).std(0).min() > 0.1
    assert (f.amax(1) - f.amin(1)).mean() > 0.03          # not all grey
    assert f.std((1, 2, 3)).median() > 0.08                # most crops hold more than one region


def test_leaves_source_and_its_own_validation():
    ds = load_data("leaves", noise="gaussian:20", seed=1, n_train=40, n_val=20)
    assert ds.train_input.shape == (40, 3, 32, 32) and ds.val_target.shape == (20, 3, 32, 32)
    assert ds.source == "leaves" and ds.noise == "gaussian:20"
    assert not torch.equal(ds.train_clean[:20], ds.val_target)
    assert psnr(ds.val_input, ds.val_target) < 30


def test_mixture_shares_are_exact():
    assert shares(10, [1 / 3, 1 / 3, 1 / 3]) == [4, 3, 3]
    assert shares(7, [0.3, 0.7]) == [2, 5] and sum(shares(1001, [0.25, 0.75])) == 1001
    ds = load_data("sample@1+leaves@3", noise="gaussian:10", seed=2, n_train=41, n_val=9)
    assert len(ds) == 41 and len(ds.val_input) == 9 and ds.source == "sample@1+leaves@3"
    leaves = leaves_crops(31, torch.Generator().manual_seed(2 + 7919))   # leaves is the second source
    found = sum(any(torch.equal(c, x) for x in leaves) for c in ds.train_clean)
    assert found == shares(41, [0.25, 0.75])[1] == 31
    again = load_data("sample@1+leaves@3", noise="gaussian:10", seed=2, n_train=41, n_val=9)
    assert torch.equal(ds.train_input, again.train_input)


@pytest.mark.parametrize("spec, sources", [
    ("leaves", [("leaves", None, 1.0)]),
    ("sample+leaves", [("sample", None, 0.5), ("leaves", None, 0.5)]),
    ("sample@0.3+leaves@0.7", [("sample", None, 0.3), ("leaves", None, 0.7)]),
    ("images:/a+b/c", [("images", "/a+b/c", 1.0)]),
    ("images:/a+b+leaves@3", [("images", "/a+b", 0.25), ("leaves", None, 0.75)]),
    ("leaves+images:/x+samples", [("leaves", None, 0.5), ("images", "/x+samples", 0.5)]),
    ("images:/p@2x+leaves", [("images", "/p@2x", 0.5), ("leaves", None, 0.5)]),
])
def test_good_specs(spec, sources):
    got = parse_sources(spec)
    assert [(k, a) for k, a, _ in got] == [(k, a) for k, a, _ in sources]
    assert [w for *_, w in got] == pytest.approx([w for *_, w in sources])


@pytest.mark.parametrize("spec, why", [
    ("sample+leaves@0", "positive"), ("sample@-1+leaves", "positive"), ("sample+leaves@x", "positive"),
    ("leaves+leaves", "twice"), ("course:d+leaves", "cannot be mixed"), ("leaves@2", "use sample"),
    ("bogus+leaves", "use sample"), ("leaves:x", "use sample"),
])
def test_bad_specs_say_why_in_one_line(spec, why):
    with pytest.raises(DataError, match=why) as e:
        parse_spec(spec)
    assert "\n" not in str(e.value)


def test_mixtures_pass_run_config():
    from engine.config import ConfigError, RunConfig

    RunConfig(data="sample+leaves@2").validate()
    with pytest.raises(ConfigError, match="data:"):
        RunConfig(data="sample+leaves@0").validate()


def test_tiny_training_on_a_mixture_improves_psnr(tiny_models, tmp_path):
    from engine.config import RunConfig
    from engine.trainer import Trainer

    cfg = RunConfig(engine=1, data="sample+leaves", noise="gaussian:25", epochs=3, batch_size=32, subset=256,
                    n_val=64, lr=3e-3, seed=0, threads=1)
    t = Trainer(cfg, run_dir=tmp_path)
    t.run()
    ds = t.dataset
    assert ds.source == "sample+leaves"
    assert t.best_psnr > psnr(ds.val_input, ds.val_target) + 0.5
