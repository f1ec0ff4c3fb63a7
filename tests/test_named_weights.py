"""Weights shipped by name (``--weights gaussian25``): found by ``eval`` and ``denoise`` without a path, loaded by a
fresh grader ``Model()``, better than the general-purpose bestmodel.pth at the noise they specialise in, and a wrong
engine or an unknown name refused in one line."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from skimage import data as skdata

from engine.models import NAMED_WEIGHTS, named_weights
from Miniproject_1.model import Model
from tui.cli import main

torch.set_num_threads(1)


def run(capsys, argv):
    capsys.readouterr()
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("name", sorted(NAMED_WEIGHTS))
def test_every_named_file_ships_and_loads_in_a_fresh_model(name):
    engine, path = named_weights(name)
    assert engine == 1 and path.is_file()
    m = Model(device="cpu")
    m.load_pretrained_model(str(path))  # rebuilds to the file's widths, as the grader would
    assert m.config["loss"] == "l2"  # trained for zero-mean noise: the mean, not the median


def test_the_gaussian_specialist_beats_the_general_model_at_its_noise(capsys):
    argv = ["eval", "--engine", "1", "--data", "sample", "--noise", "gaussian:25", "--n-val", "300", "--json"]
    status, out, err = run(capsys, argv + ["--weights", "gaussian25"])
    assert status == 0, err
    special = json.loads(out)
    general = json.loads(run(capsys, argv)[1])
    assert special["weights"].endswith("gaussian25.pth") and special["psnr_noisy"] == general["psnr_noisy"]
    assert special["psnr"] > general["psnr"] + 0.3


def test_denoise_takes_the_name(tmp_path, capsys):
    Image.fromarray(skdata.astronaut()[:64, :96]).save(tmp_path / "in.png")
    status, out, err = run(capsys, ["denoise", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                                    "--weights", "gaussian25", "--add-noise", "gaussian:25"])
    assert status == 0, err
    assert "engine 1" in out and Image.open(tmp_path / "out.png").size == (96, 64)


@pytest.mark.parametrize("argv, why", [
    (["--engine", "2", "--weights", "gaussian25"], "shipped weights of engine 1, not --engine 2"),
    (["--engine", "1", "--weights", "gaussian99"], "nor shipped weights (gaussian25)"),
])
def test_a_wrong_engine_or_name_is_one_line(tmp_path, capsys, argv, why):
    status, _, err = run(capsys, ["eval", *argv, "--data", "sample", "--runs-dir", str(tmp_path)])
    assert status == 2 and why in err and len(err.strip().splitlines()) == 1
