"""The shipped bestmodel.pth files measure what the README says, the way the course grader measures them.

A file replaced by accident (a smaller run's weights, an export over the top, a checkpoint trained on other data)
fails here instead of reaching the grader. The floors sit 0.3 dB under the measured values (29.91 and 28.01 dB on
the 1000 `sample`/`mix` validation pairs, seed 0): room for another platform's float round-off, not for a weaker
model, and still above the targets the files were trained for (28.5 and 26.5 dB)."""
from __future__ import annotations

import pytest
import torch

from engine.data import load_data
from engine.evaluate import evaluate
from engine.models import bestmodel_path, model_module

FLOORS = {1: 29.61, 2: 27.71}


@pytest.fixture(scope="module")
def val():
    return load_data("sample", noise="mix", seed=0, n_train=1, n_val=1000)


@pytest.mark.parametrize("engine", [1, 2])
def test_the_shipped_weights_measure_what_the_readme_says(engine, val):
    path = bestmodel_path(engine)
    if not path.is_file():
        pytest.skip(f"no {path} shipped")
    torch.manual_seed(0)
    model = model_module(engine).Model()  # exactly as the grader: no arguments, then its own loader
    model.load_pretrained_model()
    r = evaluate(model, val.val_input, val.val_target)
    assert r["psnr_noisy"] == pytest.approx(20.73, abs=0.01)  # the same validation pairs as the README's table
    assert r["psnr"] >= FLOORS[engine], r
