"""Data sources and noise models: the course format, deterministic sample data, clear errors."""
import pytest
import torch

from engine.data import DataError, load_data, load_pair_file, make_crops, parse_spec
from engine.metrics import psnr, psnr_per_image, ssim
from engine.noise import NOISES, corrupt, get_noise
from sessions import Store


@pytest.fixture(scope="module")
def small():
    return load_data("sample", noise="mix", seed=3, n_train=64, n_val=32)


def test_sample_shapes_and_dtypes(small):
    assert small.train_input.shape == small.train_target.shape == (64, 3, 32, 32)
    assert small.val_input.shape == small.val_target.shape == (32, 3, 32, 32)
    for t in (small.train_input, small.train_target, small.val_input, small.val_target):
        assert t.dtype == torch.uint8
    # the two training versions are corrupted independently
    assert not torch.equal(small.train_input, small.train_target)


def test_sample_is_deterministic_for_a_seed(small):
    again = load_data("sample", noise="mix", seed=3, n_train=64, n_val=32)
    assert torch.equal(small.train_input, again.train_input)
    assert torch.equal(small.val_target, again.val_target)
    other = load_data("sample", noise="mix", seed=4, n_train=64, n_val=32)
    assert not torch.equal(small.train_input, other.train_input)


def test_validation_is_noisier_than_clean(small):
    assert psnr(small.val_input, small.val_target) < 35


@pytest.mark.parametrize("name", list(NOISES))
def test_every_noise_corrupts_within_range(name):
    clean = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    noisy = corrupt(clean, name, torch.Generator().manual_seed(0), level=(0.5, 0.5))
    assert noisy.dtype == torch.uint8 and noisy.shape == clean.shape
    assert not torch.equal(noisy, clean)
    assert get_noise(name).loss in ("l1", "l2", "l0")


def test_noise_strength_orders_psnr():
    clean = make_crops([torch.rand(3, 128, 128)], 16, torch.Generator().manual_seed(0))
    for name in ("gaussian", "poisson", "impulse"):
        weak = corrupt(clean, name, torch.Generator().manual_seed(1), level=(0.1, 0.1))
        strong = corrupt(clean, name, torch.Generator().manual_seed(1), level=(0.9, 0.9))
        assert psnr(weak, clean) > psnr(strong, clean) + 2, name


def test_impulse_blocks_are_small_and_sparse():
    clean = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    noisy = corrupt(clean, "impulse", torch.Generator().manual_seed(0), level=(0.0, 0.0))
    changed = (noisy != clean).any(1).float().mean().item()
    assert 0.005 < changed < 0.06  # about 2% of pixels at the lowest level


def test_unknown_noise_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown noise 'bogus'"):
        load_data("sample", noise="bogus", n_train=4, n_val=4)


@pytest.mark.parametrize("spec", ["", "course", "course:", "images", "nope:x", "sample:x"])
def test_bad_specs(spec):
    with pytest.raises(DataError, match="bad data spec"):
        parse_spec(spec)


def test_course_round_trip(tmp_path, small):
    torch.save((small.train_input, small.train_target), tmp_path / "train_data.pkl")
    torch.save((small.val_input, small.val_target), tmp_path / "val_data.pkl")
    ds = load_data(f"course:{tmp_path}", n_train=10)
    assert ds.noise is None and len(ds) == 10
    assert torch.equal(ds.val_target, small.val_target)


def test_course_float_values_are_accepted(tmp_path, small):
    torch.save((small.val_input.float(), small.val_target.double()), tmp_path / "val_data.pkl")
    a, b = load_pair_file(tmp_path / "val_data.pkl", "noisy, clean")
    assert a.dtype == b.dtype == torch.uint8 and torch.equal(b, small.val_target)


@pytest.mark.parametrize("obj, msg", [
    ([torch.zeros(2, 3, 4, 4, dtype=torch.uint8)], "tuple of two tensors"),
    ((torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, 3, 4, 5, dtype=torch.uint8)), "differ in shape"),
    ((torch.zeros(2, 1, 4, 4, dtype=torch.uint8),) * 2, "expected N x 3 x H x W"),
    ((torch.zeros(3, 4, 4, dtype=torch.uint8),) * 2, "expected N x 3 x H x W"),
    ((torch.zeros(2, 3, 4, 4, dtype=torch.int32),) * 2, "dtype torch.int32"),
    ((torch.full((2, 3, 4, 4), 300.0),) * 2, r"in \[0, 255\]"),
    ({"a": torch.zeros(1)}, "tuple of two tensors"),
])
def test_course_validation_names_the_problem(tmp_path, obj, msg):
    f = tmp_path / "val_data.pkl"
    torch.save(obj, f)
    with pytest.raises(DataError, match=msg) as e:
        load_pair_file(f, "noisy, clean")
    assert str(f) in str(e.value)


def test_corrupt_and_missing_course_files(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_data(f"course:{tmp_path / 'nope'}")
    (tmp_path / "train_data.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="not a readable PyTorch tensor file"):
        load_data(f"course:{tmp_path}")


def _course(tmp_path, name, train_shape, val_shape):
    d = tmp_path / name
    d.mkdir()
    torch.save((torch.zeros(train_shape, dtype=torch.uint8),) * 2, d / "train_data.pkl")
    torch.save((torch.zeros(val_shape, dtype=torch.uint8),) * 2, d / "val_data.pkl")
    return d


@pytest.mark.parametrize("train_shape, val_shape, needle", [
    ((0, 3, 32, 32), (4, 3, 32, 32), "train_data.pkl: holds 0 image pairs"),
    ((4, 3, 32, 32), (0, 3, 32, 32), "val_data.pkl: holds 0 image pairs"),
    ((4, 3, 2, 2), (4, 3, 2, 2), "images are 2x2, at least 4x4 are needed"),
])
def test_unusable_course_files_are_refused_at_load(tmp_path, capsys, train_shape, val_shape, needle):
    from tui.cli import main

    d = _course(tmp_path, "c", train_shape, val_shape)
    assert main(["train", "--headless", "--data", f"course:{d}", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or Store(tmp_path / "runs").list_runs() == []


def test_images_folder(tmp_path):
    import numpy as np
    from skimage import io

    rng = np.random.default_rng(0)
    for i in range(3):
        io.imsave(tmp_path / f"p{i}.png", (rng.random((80, 90, 3)) * 255).astype("uint8"), check_contrast=False)
    ds = load_data(f"images:{tmp_path}", noise="gaussian", n_train=20, n_val=5)
    assert ds.train_input.shape == (20, 3, 32, 32) and ds.val_target.shape == (5, 3, 32, 32)
    (tmp_path / "one").mkdir()
    io.imsave(tmp_path / "one" / "a.png", (rng.random((40, 40, 3)) * 255).astype("uint8"), check_contrast=False)
    with pytest.raises(DataError, match="at least 2"):
        load_data(f"images:{tmp_path / 'one'}", n_train=2, n_val=2)


def test_images_folder_searches_sub_folders_and_mixes(tmp_path):
    import numpy as np
    from skimage import io

    from engine.data import image_files

    rng = np.random.default_rng(0)
    d = tmp_path / "a+b"                      # a '+' in the folder name stays part of the path
    for sub in ("x", "x/y", "z", ".hidden"):
        (d / sub).mkdir(parents=True)
    for name in ("x/p.png", "x/y/q.jpg", "z/r.png", ".hidden/s.png"):
        io.imsave(d / name, (rng.random((64, 64, 3)) * 255).astype("uint8"), check_contrast=False)
    assert [str(p.relative_to(d)) for p in image_files(d)] == ["x/p.png", "x/y/q.jpg", "z/r.png"]
    ds = load_data(f"images:{d}", noise="gaussian", n_train=8, n_val=4)
    assert ds.train_input.shape == (8, 3, 32, 32)
    mixed = load_data(f"images:{d}@1+leaves@1", noise="gaussian", n_train=9, n_val=3)
    assert len(mixed) == 9 and len(mixed.val_input) == 3


def test_psnr_matches_the_course_formula():
    clean = torch.rand(5, 3, 8, 8) * 255
    noisy = (clean + torch.randn_like(clean) * 10).clamp(0, 255)
    per = [-10 * torch.log10(((noisy[i] / 255 - clean[i] / 255) ** 2).mean() + 1e-8) for i in range(5)]
    assert psnr(noisy, clean) == pytest.approx(torch.stack(per).mean().item(), abs=1e-4)
    assert psnr_per_image(clean, clean).min() > 79  # 1e-8 floor: 80 dB
    assert ssim(clean, clean) == pytest.approx(1.0, abs=1e-4)
    smooth = torch.full((2, 3, 16, 16), 120.0)
    assert ssim((smooth + torch.randn_like(smooth) * 20).clamp(0, 255), smooth) < 0.5
