"""The ``pypi`` data source: photographs that other PyPI packages ship (scikit-learn, matplotlib, sporco, mahotas),
none of them scikit-image's, a second source for measuring models trained on ``sample`` (issue 25). All nine or a
one-line error naming what to install; a data spec everywhere one is taken; ``eval --full`` measures all nine."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import specs
from engine.data import SAMPLE_TRAIN, SAMPLE_VAL, load_data, parse_sources, parse_spec, pypi_photos
from engine.images import read_image
from tui.cli import main
from tui.commands.eval_cmd import full_images
from tui.screens.launcher import data_problem


def test_the_nine_photos_are_installed_colour_and_large():
    files = pypi_photos()
    assert [f.name for f in files] == ["grace_hopper.jpg", "china.jpg", "flower.jpg", "barbara.png", "kodim23.png",
                                       "monarch.png", "sail.png", "tulips.png", "luispedro.jpg"]
    for f in files:
        pic = read_image(f)
        assert pic.pixels.shape[0] == 3 and min(pic.size) >= 300, f
        assert pic.pixels.std() > 0.1, f   # a photograph, not a blank page
    # none of them is one of the sample photographs the shipped files trained or chose checkpoints on
    assert not {f.name for f in files} & set(SAMPLE_TRAIN + SAMPLE_VAL)


def test_pypi_is_a_data_spec_alone_and_in_mixtures():
    assert parse_spec("pypi") == ("pypi", None)
    assert parse_sources("sample+pypi@3") == [("sample", None, 0.25), ("pypi", None, 0.75)]
    ds = load_data("sample@0.5+pypi@0.5", noise="gaussian:25", n_train=40, n_val=10)
    assert ds.train_input.shape == (40, 3, 32, 32) and ds.val_input.shape == (10, 3, 32, 32)


def test_pypi_alone_holds_out_a_photo_for_validation():
    ds = load_data("pypi", noise="gaussian:25", n_train=64, n_val=16)
    assert ds.source == "pypi" and ds.train_input.dtype == torch.uint8
    assert ds.val_target.shape == (16, 3, 32, 32) and ds.train_clean.shape == (64, 3, 32, 32)


def test_eval_full_measures_all_nine():
    assert full_images("pypi") == pypi_photos()


def _without(monkeypatch, module):
    real = importlib.util.find_spec
    monkeypatch.setattr(specs.importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))


@pytest.mark.parametrize("argv", [
    ["eval", "--engine", "1", "--data", "pypi", "--full", "--noise", "gaussian:25"],
    ["train", "--headless", "--data", "sample+pypi", "--epochs", "1"],
    ["data", "make", "--out", "OUT", "--source", "pypi"],
])
def test_a_missing_package_is_one_line_naming_what_to_install(tmp_path, capsys, monkeypatch, argv):
    _without(monkeypatch, "sporco")
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(["--runs-dir", str(tmp_path / "runs"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "sporco" in err and "pip install 'n2n-tui[photos]'" in err
    assert not (tmp_path / "out" / "train_data.pkl").exists()


def test_the_launcher_form_names_the_missing_package(monkeypatch):
    assert data_problem("sample+pypi") is None
    _without(monkeypatch, "mahotas")
    line = "pypi: the photos of mahotas are not installed (pip install 'n2n-tui[photos]')"
    assert data_problem("sample+pypi") == line


def test_eval_families_on_whole_photos_gives_a_column_per_file(tmp_path, weights):
    """scripts/eval_families.py --photos: the six fixed-strength rows, one column per weights file, the same noisy
    photos for every file (so the same file twice reads the same)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / name)
    script = Path(__file__).resolve().parent.parent / "scripts" / "eval_families.py"
    out = subprocess.run([sys.executable, str(script), "--engine", "1", "--photos", f"images:{photos}", "--weights",
                          str(weights), str(weights), "--threads", "1", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert [row["family"] for row in r["tables"][0]] == ["gaussian:25", "poisson:27.5", "impulse:0.21", "pixelate:3",
                                                         "blocky:0.11", "mix"]
    assert r["tables"][0] == r["tables"][1]
    assert all(row["model"] != row["noisy"] for row in r["tables"][0])
