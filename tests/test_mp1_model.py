"""Miniproject_1: the course grader's flow and the engine extras."""
import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

from engine.data import load_data
from engine.evaluate import evaluate
from Miniproject_1.model import BESTMODEL, Model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data():
    return load_data("sample", noise="mix", seed=11, n_train=320, n_val=200)


def test_predict_any_size_and_dtype():
    torch.manual_seed(0)
    m = Model()
    x = torch.rand(1, 3, 512, 512) * 255
    x0 = x.clone()
    y = m.predict(x)
    assert y.shape == (1, 3, 512, 512) and y.dtype == torch.float32
    assert 0 <= y.min() and y.max() <= 255
    assert torch.equal(x, x0), "predict must not modify its input"
    for shape in [(2, 3, 33, 17), (1, 3, 1, 1), (3, 3, 5, 64)]:
        u = torch.randint(0, 256, shape, dtype=torch.uint8)
        assert m.predict(u).shape == shape


@pytest.mark.parametrize("bad, msg", [
    (torch.zeros(3, 32, 32), r"\(N, 3, H, W\)"),
    (torch.zeros(1, 1, 32, 32), r"\(N, 3, H, W\)"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.int64), "dtype"),
    ([[1.0]], "torch.Tensor"),
    (torch.zeros(1, 3, 0, 8), "is empty"),
])
def test_bad_input_raises_value_error(bad, msg):
    m = Model()
    with pytest.raises(ValueError, match=msg):
        m.predict(bad)
    with pytest.raises(ValueError):
        m.train(bad, bad, 1)


def test_mismatched_pairs_are_refused():
    m = Model()
    with pytest.raises(ValueError, match="differ in shape"):
        m.train(torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 8, 8), 1)


def test_train_step_lowers_the_loss_and_lr_is_settable():
    torch.manual_seed(0)
    m = Model(batch_size=8)
    m.augment = False
    clean = torch.rand(8, 3, 16, 16) * 255
    a = (clean + torch.randn_like(clean) * 20).clamp(0, 255)
    b = (clean + torch.randn_like(clean) * 20).clamp(0, 255)
    first = m.train_step(a, b)
    for _ in range(30):
        last = m.train_step(a, b)
    assert isinstance(first, float) and last < first
    m.learning_rate = 1e-4
    assert m.learning_rate == pytest.approx(1e-4)
    assert m.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            m.learning_rate = bad


def test_training_on_sizes_that_are_not_multiples_of_4():
    m = Model(widths=(8, 16), device="cpu")
    for h, w in ((5, 7), (33, 65), (4, 4)):
        x = torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8)
        assert math.isfinite(m.train_step(x, x))
        assert m.predict(x).shape == (2, 3, h, w)


def test_save_load_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(1)
    m = Model()
    m.train_step(torch.rand(4, 3, 16, 16) * 255, torch.rand(4, 3, 16, 16) * 255)
    path = tmp_path / "w.pth"
    m.save(path)
    assert not list(tmp_path.glob("*.tmp"))
    state = torch.load(path, weights_only=True)
    assert state["config"]["widths"] == m.config["widths"]
    fresh = Model()
    fresh.load_pretrained_model(path)
    x = torch.rand(2, 3, 24, 24) * 255
    assert torch.equal(fresh.predict(x), m.predict(x))


def test_checkpoint_with_other_widths_rebuilds_the_network(tmp_path):
    small = Model(widths=(8, 16))
    small.save(tmp_path / "s.pth")
    m = Model()
    m.load_pretrained_model(tmp_path / "s.pth")
    assert m.config["widths"] == [8, 16]
    x = torch.rand(1, 3, 20, 20) * 255
    assert torch.equal(m.predict(x), small.predict(x))


def test_widening_keeps_the_function_and_the_new_units_learn():
    from Miniproject_1.others.unet import UNet

    torch.manual_seed(0)
    narrow = Model(device="cpu", widths=(8, 12, 16))
    for prm in narrow.net.parameters():  # a trained-looking network: the head is not zero
        torch.nn.init.normal_(prm, std=0.1)
    wide = Model(device="cpu", widths=(10, 20, 16))
    before = [p for p in wide.net.parameters()]
    wide.net.widen_from(narrow.net)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(wide.net(x), narrow.net(x), atol=1e-5)
    assert all(a is b for a, b in zip(before, wide.net.parameters())), "copied in place: the optimizer keeps them"
    unread = wide.net.down[0][2].weight[:, 8:].clone()  # the first block's second conv, from its two new units
    assert not unread[:8].any()
    wide.train_step(x, torch.rand(4, 3, 32, 32))
    assert wide.net.down[0][2].weight[:8, 8:].abs().sum() > 0, "the old units start reading the new ones"
    for widths in ((8, 12), (8, 10, 16), (8, 12, 16, 16)):  # another depth, or a narrower level
        with pytest.raises(ValueError, match="cannot widen"):
            UNet(widths).widen_from(narrow.net)


def test_full_state_restores_the_optimizer():
    torch.manual_seed(2)
    a = Model()
    x, y = torch.rand(4, 3, 16, 16) * 255, torch.rand(4, 3, 16, 16) * 255
    a.augment = False
    a.train_step(x, y)
    b = Model()
    b.augment = False
    b.load_state_dict(a.state_dict(with_optimizer=True))
    a.train_step(x, y)
    b.train_step(x, y)
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.allclose(p, q)


def test_foreign_checkpoints_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "f.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    m = Model()
    with pytest.raises(ValueError, match="not a Miniproject_1 checkpoint"):
        m.load_pretrained_model(tmp_path / "f.pth")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        m.load_pretrained_model(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        m.load_pretrained_model(tmp_path / "missing.pth")


def test_grader_import_style_top_level_model(monkeypatch):
    """The course's test.py puts Miniproject_1/ on sys.path and imports ``model`` directly."""
    monkeypatch.syspath_prepend(str(ROOT / "Miniproject_1"))
    for name in ("model", "others", "others.unet"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    mod = importlib.import_module("model")
    assert mod.Model().predict(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    for name in ("model", "others", "others.unet"):
        sys.modules.pop(name, None)


@pytest.mark.skipif(not BESTMODEL.is_file(), reason="no shipped bestmodel.pth yet")
def test_grader_flow_with_the_shipped_model(data):
    torch.manual_seed(0)
    m = Model()
    m.load_pretrained_model()
    r = evaluate(m, data.val_input, data.val_target)
    assert r["psnr"] > r["psnr_noisy"] + 3.0, r
    # the grader then trains one epoch from the pretrained state: PSNR must stay above the noisy input's
    m.train(data.train_input, data.train_target, num_epochs=1)
    after = evaluate(m, data.val_input, data.val_target)
    assert after["psnr"] > after["psnr_noisy"] + 1.0, after
