"""Shared test fixtures: keep this small; fixtures for one area belong in that area's test files."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def poisson_data():
    """A small `sample` data set with Poisson noise (256 training pairs, 64 validation pairs): a tiny network's
    PSNR rises on it within a hundred steps. Shared by the whole session (generating it takes about a second)."""
    from engine.data import load_data

    return load_data("sample", noise="poisson", seed=0, n_train=256, n_val=64)


@pytest.fixture
def tiny_models(monkeypatch):
    """Make the trainer build a narrow Miniproject_1 network (widths 8, 16): same code paths, a fraction of the
    CPU time. Saved weights still load in a fresh default ``Model()`` (it rebuilds to the checkpoint's widths)."""
    import engine.trainer
    from Miniproject_1.model import Model

    monkeypatch.setattr(engine.trainer, "new_model",
                        lambda engine, device=None: Model(widths=(8, 16), device=device) if engine == 1
                        else _real_new_model(engine, device))


def _real_new_model(engine, device=None):
    from engine.models import new_model

    return new_model(engine, device)
