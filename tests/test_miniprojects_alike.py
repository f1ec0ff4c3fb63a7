"""The two Miniprojects read alike: each folder is handed in on its own, so what they share is copied, and these tests
keep the copies from drifting apart (the fine-tuning code has its own: test_fine_tune.py). Same live hyper-parameter
table, same constructor shape, same engine-facing names, same checkpoint keys, same augmentation, one import idiom,
type hints in both."""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MP1 = importlib.import_module("Miniproject_1.model")
MP2 = importlib.import_module("Miniproject_2.model")

# what the engine, the sessions and the scripts use of a Model (engine/trainer.py, engine/config.py, scripts/)
ENGINE_FACE = ("HYPERPARAMETERS", "check_options", "check_hyperparameter", "hyperparameters", "set_hyperparameter",
               "learning_rate", "train_step", "state_dict", "load_state_dict", "save", "load_pretrained_model",
               "train", "predict")
INSTANCE_FACE = ("device", "config", "batch_size", "net", "criterion", "optimizer", "grad_clip", "augment",
                 "swap_pairs", "loaded", "last_fine_tune")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return MP1.Model(device="cpu", widths=(8, 16)), MP2.Model(device="cpu", c1=8, c2=8)


def test_the_hyperparameter_tables_are_equal():
    """The engine offers the same live hyper-parameters, with the same ranges and help, whichever the engine."""
    assert MP1.Model.HYPERPARAMETERS == MP2.Model.HYPERPARAMETERS
    assert list(MP1.Model.HYPERPARAMETERS) == list(MP2.Model.HYPERPARAMETERS)      # the order the dashboard shows
    one, two = (inspect.getsource(m.Model.check_hyperparameter) for m in (MP1, MP2))
    assert one == two, "check_hyperparameter is the same code in both"


def test_hyperparameters_report_every_declared_one(models):
    for m in models:
        assert list(m.hyperparameters()) == list(m.HYPERPARAMETERS)
        assert m.set_hyperparameter("batch_size", "16") == 16 and m.batch_size == 16
        m.set_hyperparameter("batch_size", 32)


def test_the_constructors_have_the_same_shape():
    """(device, lr, batch_size) first with the same defaults, then the network options as keywords only, the same
    ones check_options takes; loss last, "l1" in both."""
    for m in (MP1, MP2):
        params = list(inspect.signature(m.Model).parameters.values())
        assert [(p.name, p.default) for p in params[:3]] == [("device", None), ("lr", 1e-3), ("batch_size", 32)]
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:3])
        rest = params[3:]
        assert rest and all(p.kind is p.KEYWORD_ONLY for p in rest)
        assert (rest[-1].name, rest[-1].default) == ("loss", "l1")
        check = inspect.signature(m.Model.check_options).parameters.values()
        assert [(p.name, p.default, p.kind) for p in check] == [(p.name, p.default, p.kind) for p in rest]


def test_the_same_names_face_the_engine(models):
    for name in ENGINE_FACE:
        assert hasattr(MP1.Model, name) and hasattr(MP2.Model, name), name
    for m in models:
        for name in INSTANCE_FACE:
            assert hasattr(m, name), (type(m).__module__, name)
    assert models[0].swap_pairs is models[1].swap_pairs is True
    assert models[0].augment is models[1].augment is True


def test_the_checkpoint_keys_are_the_same(models):
    for m in models:
        assert list(m.state_dict(with_optimizer=True)) == ["format", "config", "model", "optimizer"]
        assert list(m.state_dict(with_optimizer=False)) == ["format", "config", "model"]
    one = torch.load(MP1.BESTMODEL, map_location="cpu", weights_only=True)
    two = MP2.checkpoint.load(MP2.BESTMODEL)
    assert list(one) == list(two) == ["format", "config", "model"], "the shipped files use the same keys"


@pytest.mark.parametrize("swap", [True, False])
def test_the_augmentation_is_the_same(models, swap):
    """From the same seed both draw the same flip, quarter turns and swap; without swap_pairs the input stays the
    input (a clean-target run must not train on clean inputs)."""
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)   # not square: turns change the shape
    y = -x
    swapped = 0
    try:
        for m in models:
            m.swap_pairs = swap
        for seed in range(32):
            outs = []
            for m in models:
                torch.manual_seed(seed)
                outs.append(m._augment(x, y))
            (a1, b1), (a2, b2) = outs
            assert torch.equal(a1, a2) and torch.equal(b1, b2), seed
            swapped += bool(a1.sum() < 0)
    finally:
        for m in models:
            m.swap_pairs = True
    assert (0 < swapped < 32) if swap else swapped == 0


def _top_level_ifs(path: Path) -> list[ast.If]:
    return [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.If)]


def test_one_import_idiom():
    """Both model.py tell a package import from the grader's top-level ``import model`` by ``__package__``, and
    neither catches ImportError (which would hide a real one inside others/)."""
    for n in (1, 2):
        path = ROOT / f"Miniproject_{n}" / "model.py"
        tree = ast.parse(path.read_text())
        assert any(isinstance(i.test, ast.Name) and i.test.id == "__package__" for i in _top_level_ifs(path)), path
        assert not any(isinstance(h, ast.ExceptHandler) and isinstance(h.type, ast.Name) and h.type.id == "ImportError"
                       for h in ast.walk(tree)), path


def test_type_hints_in_both():
    """Every method of both Models declares what it returns, and every argument but self, cls and ``value`` (a
    hyper-parameter's new value, any type its kind converts) has a type."""
    for m in (MP1, MP2):
        for name, member in vars(m.Model).items():
            fns = [member.fget, member.fset] if isinstance(member, property) else [getattr(member, "__func__", member)]
            for fn in fns:
                if not inspect.isfunction(fn):
                    continue
                sig = inspect.signature(fn)
                where = f"Miniproject_{1 if m is MP1 else 2}.Model.{name}"
                assert sig.return_annotation is not inspect.Signature.empty, where
                for p in sig.parameters.values():
                    if p.name not in ("self", "cls", "value") or (p.name == "value" and isinstance(member, property)):
                        assert p.annotation is not inspect.Parameter.empty, (where, p.name)
