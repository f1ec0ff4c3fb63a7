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


@pytest.fixture(autouse=True)
def no_runner_left_behind(request):
    """A runner a test started in its tmp_path must not outlive the test (a failing test would leave it training).
    Any left is killed, and the test fails if it passed otherwise."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    import os
    import signal

    tmp = str(request.getfixturevalue("tmp_path"))
    yield
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"sessions.runner" in cmd and any(tmp.encode() in part for part in cmd):
            left.append(int(pid))
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not left, f"runners left behind by the test: {left}"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A narrow Miniproject_1 checkpoint whose output differs from its input (a random 1x1 head), fast to run."""
    import torch

    from Miniproject_1.model import Model

    torch.manual_seed(0)
    m = Model(widths=(8, 16))
    torch.nn.init.normal_(m.net.head.weight, std=0.05)
    path = tmp_path_factory.mktemp("w") / "narrow.pth"
    m.save(path)
    return path


@pytest.fixture
def trained_run(tiny_models, poisson_data, tmp_path):
    """A finished engine-1 run recorded in a store, trained a little: (runs_dir, run_id, trainer). Shared by the
    export, checkpoint, error-message and full-disk tests."""
    from engine.config import RunConfig
    from engine.trainer import Trainer
    from sessions import Recorder, Store

    runs = tmp_path / "runs"
    config = RunConfig(engine=1, noise="poisson", epochs=1, batch_size=8, lr=3e-3, subset=64, n_val=64,
                       eval_every=4, device="cpu")
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        assert t.run() == "finished"
    return runs, run, t
