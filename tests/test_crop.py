"""Training crops larger than the course's 32 px (``RunConfig.crop``, ``n2n-tui train --crop``): a model meant for whole
photographs learns from the context its network sees. Every generated source makes them (photographs, folders of
images, dead leaves, mixtures), fresh pairs keep their size, validation crops stay 32 px so that runs compare, and a
size the U-Nets cannot take or course data (32 px by nature) is refused."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from skimage import data as skdata
from trainer_helpers import cfg

from engine.config import ConfigError, RunConfig
from engine.data import DataError, load_data
from engine.trainer import Trainer


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    (d / "sub").mkdir()
    for i, im in enumerate((skdata.astronaut(), skdata.chelsea(), skdata.coffee()[:50, :70])):  # one smaller than 64
        Image.fromarray(im).save(d / ("sub" if i else ".") / f"p{i}.png")
    return d


@pytest.mark.parametrize("spec", ["sample", "leaves", "sample@0.5+leaves@0.5", "images"])
def test_every_generated_source_makes_training_crops_of_the_side_asked(spec, folder):
    spec = f"images:{folder}" if spec == "images" else spec
    ds = load_data(spec, noise="gaussian:25", seed=3, n_train=12, n_val=4, crop=64)
    assert ds.train_input.shape == ds.train_target.shape == ds.train_clean.shape == (12, 3, 64, 64)
    assert ds.val_input.shape == ds.val_target.shape == (4, 3, 32, 32)
    assert ds.train_input.dtype == torch.uint8 and ds.train_clean.float().std() > 5  # real image content
    small = load_data(spec, noise="gaussian:25", seed=3, n_train=12, n_val=4)
    assert small.train_input.shape[-1] == 32 and torch.equal(small.val_target, ds.val_target)


def test_the_default_is_the_course_crop_and_the_same_data_as_before():
    a = load_data("sample", noise="gaussian:25", seed=1, n_train=8, n_val=4)
    b = load_data("sample", noise="gaussian:25", seed=1, n_train=8, n_val=4, crop=32)
    assert RunConfig().crop == 32 and torch.equal(a.train_input, b.train_input)


@pytest.mark.parametrize("crop, why", [(40, "multiple of 16"), (8, "multiple of 16"), (512, "from 16 to 256"),
                                       (True, "multiple of 16"), ("64", "multiple of 16")])
def test_a_side_the_networks_cannot_take_is_refused(crop, why):
    with pytest.raises(ConfigError, match=f"crop: .*({why})"):
        RunConfig(crop=crop).validate()
    if isinstance(crop, int) and not isinstance(crop, bool):
        with pytest.raises(DataError, match="multiple of 16"):
            load_data("sample", n_train=4, n_val=4, crop=crop)


def test_course_data_has_its_own_size():
    with pytest.raises(ConfigError, match="crop: course data comes in 32 px crops, not 64"):
        RunConfig(data="course:data", crop=64).validate()
    RunConfig(data="course:data", crop=32).validate()


def test_memory_is_counted_for_the_crop_side(monkeypatch):
    import engine.specs
    from engine.specs import size_problem

    monkeypatch.setattr(engine.specs, "available_memory", lambda: 24 * 2**30)  # this machine's

    assert size_problem(50_000) is None  # the default run's 50 000 pairs: about 3 GB of work at 32 px
    assert "need about 183.1 GiB" in size_problem(50_000, crop=256)  # 64 times that at 256 px


def test_the_trainer_trains_on_large_crops_with_fresh_pairs_and_validates_on_32(tiny_models, tmp_path):
    ds = load_data("sample+leaves", noise="gaussian:25", seed=0, n_train=16, n_val=8, crop=48)
    t = Trainer(cfg(batch_size=8, n_val=8, threads=1, noise="gaussian:25", crop=48, fresh=True, float_targets=True,
                    epochs=3), run_dir=tmp_path / "run", dataset=ds)
    shapes = []
    t.add_sink(lambda ev: ev.kind == "step" and shapes.append(tuple(t.dataset.train_target.shape)))
    assert t.run() == "finished" and t.fresh_epochs == 2
    assert set(shapes) == {(16, 3, 48, 48)} and t.dataset.val_input.shape[-1] == 32
    assert t.best_psnr > t.psnr_noisy - 1


def test_train_crop_from_the_command_line_is_recorded_and_listed(tiny_models, tmp_path, capsys):
    from sessions import Store
    from tui.cli import main

    runs = str(tmp_path / "runs")
    assert main(["train", "--engine", "1", "--data", "sample", "--noise", "gaussian:25", "--subset", "16",
                 "--batch-size", "8", "--n-val", "8", "--device", "cpu", "--crop", "64", "--headless",
                 "--runs-dir", runs]) == 0
    with Store(runs) as s:
        [run] = s.list_runs()
    assert run["config"]["crop"] == 64 and run["state"] == "finished"
    capsys.readouterr()
    assert main(["runs", "--runs-dir", runs]) == 0
    assert "gaussian:25 crop 64" in capsys.readouterr().out
