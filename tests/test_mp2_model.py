"""Miniproject_2's Model through the course grader's flow, the engine extras, and its code-free checkpoints."""
import io
import os
import pickle
import pickletools

import pytest
import torch

from Miniproject_2 import model as mp2
from Miniproject_2.model import Model
from Miniproject_2.others import checkpoint
from Miniproject_2.others.checkpoint import CheckpointError


@pytest.fixture(autouse=True)
def _setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    prev = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    yield
    torch.set_grad_enabled(prev)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Model(device="cpu")


def test_constructs_without_arguments():
    m = Model()
    assert m.device in ("cpu", "cuda")
    names = [type(b).__name__ for b in m.net]
    assert names == ["Conv2d", "ReLU", "Conv2d", "ReLU", "Upsampling", "ReLU", "Upsampling", "Sigmoid"]
    assert m.net[0].stride == (2, 2) and m.net[2].stride == (2, 2)


def test_predict_large_image_shape_and_range(model):
    x = torch.rand(1, 3, 512, 512) * 255
    y = model.predict(x)
    assert y.shape == (1, 3, 512, 512) and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 255 and torch.isfinite(y).all()
    assert y.device == x.device


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (2, 3, 17, 30), (1, 3, 1, 5), (5, 3, 33, 7)])
def test_predict_any_size_uint8_and_float_agree(model, shape):
    x8 = (torch.rand(shape) * 255).round().to(torch.uint8)
    y8 = model.predict(x8)
    yf = model.predict(x8.float())
    assert y8.shape == shape and y8.dtype == torch.float32
    torch.testing.assert_close(y8, yf)
    assert x8.dtype == torch.uint8  # input untouched


def test_predict_batches_like_the_grader(model):
    x = (torch.rand(7, 3, 32, 32) * 255).to(torch.uint8)
    whole = model.predict(x)
    parts = torch.cat([model.predict(x.narrow(0, i, min(3, 7 - i))) for i in range(0, 7, 3)])
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bad", [torch.rand(3, 32, 32), torch.rand(2, 1, 8, 8), torch.rand(2, 4, 8, 8),
                                 torch.zeros(2, 3, 8, 8, dtype=torch.int64), torch.rand(0, 3, 8, 8), [[1.0]]])
def test_predict_rejects_bad_input(model, bad):
    with pytest.raises(ValueError):
        model.predict(bad)


def test_train_rejects_mismatched_pairs(model):
    with pytest.raises(ValueError, match="differ in shape"):
        model.train(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 9))
    with pytest.raises(ValueError):
        model.train_step(torch.rand(4, 3, 8, 8), torch.rand(3, 3, 8, 8))


def test_train_step_returns_float_and_lowers_loss():
    torch.manual_seed(1)
    m = Model(device="cpu")
    m.augment = False
    clean = torch.rand(8, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3).expand(8, 3, 32, 32) * 255
    noisy_a = (clean + 20 * torch.randn(clean.shape)).clamp(0, 255)
    noisy_b = (clean + 20 * torch.randn(clean.shape)).clamp(0, 255).to(torch.uint8)
    losses = [m.train_step(noisy_a, noisy_b) for _ in range(25)]
    assert all(isinstance(v, float) for v in losses)
    assert losses[-1] < 0.7 * losses[0]


def test_train_step_on_sizes_that_need_padding():
    m = Model(device="cpu")
    loss = m.train_step(torch.rand(2, 3, 10, 13) * 255, torch.rand(2, 3, 10, 13) * 255)
    assert isinstance(loss, float) and loss > 0


def test_train_runs_epochs_and_changes_weights():
    m = Model(device="cpu")
    m.batch_size = 4
    before = [p.clone() for p, _ in m.net.param()]
    x = (torch.rand(10, 3, 16, 16) * 255).to(torch.uint8)
    m.train(x, x.clone(), num_epochs=2)
    assert m.optimizer.t == 6  # ceil(10 / 4) steps per epoch
    assert any(not torch.equal(a, p) for a, (p, _) in zip(before, m.net.param()))


def test_learning_rate_property(model):
    model.learning_rate = 2e-4
    assert model.learning_rate == 2e-4 and model.optimizer.lr == 2e-4
    for bad in (0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            model.learning_rate = bad
    model.learning_rate = 1e-3


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    torch.manual_seed(3)
    a = Model(device="cpu")
    a.train_step(torch.rand(4, 3, 16, 16) * 255, torch.rand(4, 3, 16, 16) * 255)
    path = tmp_path / "bestmodel.pth"
    a.save(path)
    assert not [p for p in os.listdir(tmp_path) if p != "bestmodel.pth"]  # no temporary file left behind
    b = Model(device="cpu")
    b.load_pretrained_model(path)
    x = torch.rand(3, 3, 20, 24) * 255
    assert torch.equal(a.predict(x), b.predict(x))
    # loading keeps the optimizer wired to the same tensors: a step moves the loaded weights
    w = b.net[0].weight.clone()
    b.train_step(torch.rand(2, 3, 8, 8) * 255, torch.rand(2, 3, 8, 8) * 255)
    assert not torch.equal(w, b.net[0].weight)


def test_state_dict_round_trip_with_optimizer():
    torch.manual_seed(4)
    a = Model(device="cpu")
    x, y = torch.rand(4, 3, 16, 16) * 255, torch.rand(4, 3, 16, 16) * 255
    a.augment = False
    a.train_step(x, y)
    state = a.state_dict(with_optimizer=True)
    assert all(t.device.type == "cpu" for t in state["model"])
    b = Model(device="cpu")
    b.augment = False
    b.load_state_dict(state)
    a.train_step(x, y)
    b.train_step(x, y)
    for (p, _), (q, _) in zip(a.net.param(), b.net.param()):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError):
        b.load_state_dict({"format": "something else"})


def test_checkpoints_with_the_old_params_key_still_load(tmp_path):
    """Until the keys matched Miniproject_1's, the weights sat under "params": runs' best.pth and state.pth files
    written then load as they did, optimizer state included."""
    torch.manual_seed(6)
    a = Model(device="cpu", c1=8, c2=12)
    a.train_step(torch.rand(4, 3, 16, 16) * 255, torch.rand(4, 3, 16, 16) * 255)
    state = a.state_dict(with_optimizer=True)
    old = {"format": state["format"], "config": state["config"], "params": state["model"],
           "optimizer": state["optimizer"]}
    checkpoint.save(old, tmp_path / "old.pth")
    b = Model(device="cpu")
    b.load_pretrained_model(tmp_path / "old.pth")
    x = torch.rand(2, 3, 20, 24) * 255
    assert torch.equal(a.predict(x), b.predict(x)) and b.optimizer.t == a.optimizer.t == 1
    assert list(b.state_dict()) == ["format", "config", "model", "optimizer"]       # written with the new key
    with pytest.raises(ValueError, match="no list of weights"):
        b.load_state_dict({"format": state["format"], "config": state["config"]})
    with pytest.raises(ValueError, match="a Miniproject_1 checkpoint"):
        b.load_state_dict({"format": "n2n-tui/miniproject1", "config": {}, "model": {}})


def test_load_pretrained_default_path_and_missing_file(tmp_path, monkeypatch):
    m = Model(device="cpu")
    with pytest.raises(FileNotFoundError):
        m.load_pretrained_model(tmp_path / "nope.pth")
    m.save(tmp_path / "bestmodel.pth")
    monkeypatch.setattr(mp2, "BESTMODEL", str(tmp_path / "bestmodel.pth"))
    Model(device="cpu").load_pretrained_model()


def test_shipped_bestmodel_loads_if_present():
    if not os.path.isfile(mp2.BESTMODEL):
        pytest.skip("no Miniproject_2/bestmodel.pth yet")
    m = Model()
    m.load_pretrained_model()
    y = m.predict((torch.rand(2, 3, 32, 32) * 255).to(torch.uint8))
    assert y.shape == (2, 3, 32, 32)


def test_wrong_widths_checkpoint_rebuilds_the_network(tmp_path):
    small = Model(device="cpu", c1=8, c2=8)
    small.save(tmp_path / "small.pth")
    m = Model(device="cpu")
    m.load_pretrained_model(tmp_path / "small.pth")
    assert m.config["c1"] == 8 and m.net[0].weight.shape[0] == 8


def test_checkpoints_carry_their_network(tmp_path):
    """A checkpoint from before c3 and k existed (c1, c2, loss only) still loads as the 3x3 network it is; one of
    another shape (c3 != c1, 5x5 kernels) rebuilds Model() to it."""
    old = Model(device="cpu", c1=8, c2=12)
    state = old.state_dict(with_optimizer=False)
    state["config"] = {"c1": 8, "c2": 12, "loss": "l1"}              # what the first shipped checkpoint holds
    checkpoint.save(state, tmp_path / "old.pth")
    m = Model(device="cpu", k=5)
    m.load_pretrained_model(tmp_path / "old.pth")
    assert m.config == {"c1": 8, "c2": 12, "c3": 8, "k": 3, "loss": "l1"}
    x = (torch.rand(2, 3, 16, 16) * 255).to(torch.uint8)
    torch.testing.assert_close(m.predict(x), old.predict(x))
    new = Model(device="cpu", c1=8, c2=12, c3=6, k=5)
    new.save(tmp_path / "new.pth")
    m = Model(device="cpu")
    m.load_pretrained_model(tmp_path / "new.pth")
    assert m.config == new.config and m.net[4].weight.shape == (6, 12, 5, 5)
    torch.testing.assert_close(m.predict(x), new.predict(x))
    with pytest.raises(ValueError):
        Model(device="cpu", k=4)
    with pytest.raises(TypeError):                                    # an unknown option, as in any Python call
        Model(device="cpu", width=3)


def test_the_defaults_are_default_config():
    """The constructor's network options are keywords with defaults (as Miniproject_1's): the network they build is
    DEFAULT_CONFIG, which the engine reads for the option names."""
    assert Model(device="cpu").config == mp2.DEFAULT_CONFIG
    Model.check_options()
    with pytest.raises(ValueError, match="odd"):
        Model.check_options(k=2)


# ----------------------------------------------------------------------------------------- checkpoint safety

class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_holds_no_globals():
    blob = checkpoint.dumps({"params": [torch.randn(3, 4), torch.arange(5)], "x": 1.5})
    ops = {op.name for op, _, _ in pickletools.genops(blob)}
    assert not ops & {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "BUILD"}


def test_malicious_checkpoint_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "bestmodel.pth"
    path.write_bytes(pickle.dumps({"format": checkpoint.FORMAT, "version": 1, "payload": _Boom(marker)}))
    m = Model(device="cpu")
    before = [p.clone() for p, _ in m.net.param()]
    with pytest.raises(CheckpointError, match="refusing to load 'posix.system'|refusing to load 'nt.system'"):
        m.load_pretrained_model(path)
    assert not marker.exists()
    assert all(torch.equal(a, p) for a, (p, _) in zip(before, m.net.param()))


def test_torch_pickles_are_refused_too(tmp_path):
    """A plain pickled tensor needs torch.storage._load_from_bytes, which runs an unrestricted torch.load."""
    path = tmp_path / "t.pth"
    path.write_bytes(pickle.dumps([torch.randn(2)]))
    with pytest.raises(CheckpointError, match="refusing to load 'torch"):
        Model(device="cpu").load_pretrained_model(path)
    torch.save({"a": torch.randn(2)}, tmp_path / "z.pth")  # a torch.save zip is not ours either
    with pytest.raises(CheckpointError):
        Model(device="cpu").load_pretrained_model(tmp_path / "z.pth")


@pytest.mark.parametrize("blob", [b"", b"garbage", pickle.dumps([1, 2, 3]), pickle.dumps({"format": "other"})])
def test_damaged_checkpoints_are_refused(tmp_path, blob):
    path = tmp_path / "bad.pth"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError):
        Model(device="cpu").load_pretrained_model(path)


def test_damaged_tensor_record_is_refused():
    tree = checkpoint.encode({"w": torch.randn(4)})
    tree["w"]["data"] = tree["w"]["data"][:-1]
    blob = pickle.dumps({"format": checkpoint.FORMAT, "version": 1, "payload": tree})
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint.loads(blob)


def test_tensor_records_round_trip_exactly():
    ts = [torch.randn(3, 4), torch.randn(2, dtype=torch.float64), torch.arange(6).view(2, 3), torch.zeros(0),
          torch.tensor(2.5), torch.tensor([True, False]), torch.randint(0, 255, (4,), dtype=torch.uint8),
          torch.randn(4, 4)[:, 1:3]]
    back = checkpoint.loads(checkpoint.dumps(ts))
    for a, b in zip(ts, back):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    assert isinstance(checkpoint.loads(io.BytesIO(checkpoint.dumps({"k": [1, "s"]})).read()), dict)
