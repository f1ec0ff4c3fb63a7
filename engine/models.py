"""The two engines behind one door: ``new_model(1 | 2)`` returns a fresh grader ``Model`` of that Miniproject."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent


def model_module(engine: int):
    if engine not in (1, 2):
        raise ValueError(f"engine must be 1 or 2, got {engine!r}")
    return importlib.import_module(f"Miniproject_{engine}.model")


def new_model(engine: int, device: str | None = None, **options) -> EngineModel:
    """A fresh ``Model()`` of Miniproject_<engine>, on ``device`` (default: cuda when available); ``options`` go to
    its constructor (e.g. ``loss="l2"``)."""
    cls = model_module(engine).Model
    if device is not None:
        options["device"] = device
    return cls(**options)


def bestmodel_path(engine: int) -> Path:
    """Where the course grader looks for the engine's shipped weights."""
    return Path(model_module(engine).__file__).resolve().parent / "bestmodel.pth"


# Weights shipped beside the grader's bestmodel.pth files, by name (``--weights NAME``): engine, file in
# engine/weights/, what they are for. Each is trained by a script of the repository (docs/training.md says which).
NAMED_WEIGHTS = {
    "gaussian25": (1, "gaussian25.pth", "Miniproject_1 specialised in Gaussian noise of sigma 25 (L2, float targets)"),
}


def named_weights(name: str) -> tuple[int, Path] | None:
    """(engine, file) of shipped weights called ``name``, or None when no weights have that name."""
    if name not in NAMED_WEIGHTS:
        return None
    engine, file, _ = NAMED_WEIGHTS[name]
    return engine, Path(__file__).resolve().parent / "weights" / file


def export_target(engine: int, export_to: str | None) -> Path:
    """Where ``s`` writes: ``--export-to`` when given, else the grader's ``Miniproject_<engine>/bestmodel.pth``."""
    if export_to:
        return Path(export_to)
    return bestmodel_path(engine)


class EngineModel(Protocol):
    """What the engine asks of a Miniproject's ``Model`` beyond the grader's contract (``__init__``,
    ``load_pretrained_model``, ``train``, ``predict``): both Models have all of it, and ``tests`` check they do."""

    HYPERPARAMETERS: dict     # name -> (type, low, high, low_open, help): the live hyper-parameters
    learning_rate: float
    batch_size: int

    @staticmethod
    def check_options(**options) -> None:
        """ValueError when ``Model(**options)`` could not be built (nothing is allocated to find out)."""

    @classmethod
    def check_hyperparameter(cls, name: str, value):
        """``value`` as the hyper-parameter's type, or ValueError naming what is wrong: the one check of a live
        value, wherever it comes from (a key, ``ctl``, the socket)."""

    def hyperparameters(self) -> dict: ...

    def set_hyperparameter(self, name: str, value): ...

    def train_step(self, inputs, targets) -> float:
        """One optimizer step on a batch; returns the loss measured before the update."""

    def predict(self, test_input): ...

    def state_dict(self, with_optimizer: bool = True) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def save(self, path, with_optimizer: bool = False) -> None:
        """The weights in the grader's format, written atomically."""

    def load_pretrained_model(self, path=None) -> None: ...
