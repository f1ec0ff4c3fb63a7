"""``n2n-tui eval --full``: whole photographs of a folder at a fixed noise, per-image PSNR and SSIM, BM3D on the same
noisy images; and SSIM defined on tiny images."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from engine.metrics import ssim
from tui.cli import main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.astronaut()[100:160, 120:200]).save(d / "astronaut.png")
    Image.fromarray(skdata.camera()[200:248, 200:264]).save(d / "camera.png")  # grey
    Image.fromarray(skdata.coffee()[100:140, 100:150]).save(d / "coffee.jpg", quality=95)
    (d / "notes.txt").write_text("not an image: skipped")
    return d


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_eval_full_on_a_folder(capsys, folder, weights):
    argv = ["eval", "--engine", "1", "--weights", str(weights), "--data", f"images:{folder}", "--noise",
            "gaussian:25", "--full"]
    r = run_json(capsys, argv)
    assert {"psnr", "psnr_noisy", "ssim", "images"} <= set(r) and r["n"] == 3
    assert [im["name"] for im in r["images"]] == ["astronaut.png", "camera.png", "coffee.jpg"]
    for im in r["images"]:
        assert {"name", "psnr", "psnr_noisy", "ssim"} <= set(im)
        assert 19.5 < im["psnr_noisy"] < 21.5 and 0 < im["ssim"] <= 1
    assert r["psnr"] == pytest.approx(np.mean([im["psnr"] for im in r["images"]]))
    assert r["ssim"] == pytest.approx(np.mean([im["ssim"] for im in r["images"]]))
    again = run_json(capsys, argv)
    assert {**again, "seconds": None} == {**r, "seconds": None}  # seeded: the same numbers
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "astronaut.png" in table and "mean" in table and "80x60" in table


def test_eval_full_with_the_bm3d_baseline(tmp_path, capsys, weights, monkeypatch):
    pytest.importorskip("bm3d", reason="the bm3d extra is not installed (pip install 'n2n-tui[bm3d]')")
    Image.fromarray(skdata.astronaut()[200:232, 200:232]).save(tmp_path / "a.png")  # BM3D takes seconds per image
    argv = ["eval", "--engine", "1", "--weights", str(weights), "--data", f"images:{tmp_path}", "--noise",
            "gaussian:25", "--full"]
    plain = run_json(capsys, argv)
    r = run_json(capsys, argv + ["--baseline", "bm3d"])
    assert r["psnr_noisy"] == plain["psnr_noisy"] and r["psnr"] == plain["psnr"]  # the same noisy images
    [im] = r["images"]
    assert im["psnr_bm3d"] > im["psnr_noisy"] + 5 and 0 < im["ssim_bm3d"] <= 1
    assert r["psnr_bm3d"] == im["psnr_bm3d"] and r["seconds"]["bm3d"] > 0

    import engine.baselines

    monkeypatch.setattr(engine.baselines, "bm3d_denoise", lambda noisy, noise: noisy)  # the table, without the wait
    assert main(argv + ["--baseline", "bm3d"]) == 0
    table = capsys.readouterr().out
    assert "BM3D" in table and "model-BM3D" in table


def test_eval_full_self_ensemble_averages_eight_passes_and_gains(capsys, folder, weights):
    argv = ["eval", "--engine", "1", "--weights", str(weights), "--data", f"images:{folder}", "--noise",
            "gaussian:25", "--full"]
    one, eight = run_json(capsys, argv), run_json(capsys, argv + ["--self-ensemble"])
    assert one["self_ensemble"] is False and eight["self_ensemble"] is True
    assert eight["psnr_noisy"] == one["psnr_noisy"]  # the same noisy images
    assert eight["psnr"] > one["psnr"]  # the shipped weights on three photo crops: measured +0.2 dB
    assert eight["seconds"]["model"] > 3 * one["seconds"]["model"]
    assert main(argv + ["--self-ensemble"]) == 0 and "self-ensemble of 8" in capsys.readouterr().out


@pytest.mark.parametrize("argv, why", [
    (["--data", "sample", "--baseline", "bm3d"], "--baseline needs --full"),
    (["--data", "sample", "--self-ensemble"], "--self-ensemble needs --full"),
    (["--data", "course:DIR", "--full"], "--full needs whole photographs"),
    (["--data", "images:DIR/none", "--full"], "no such directory"),
])
def test_eval_full_bad_input(tmp_path, capsys, argv, why):
    argv = [a.replace("DIR", str(tmp_path)) for a in argv]
    assert main(["eval", "--engine", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1


def test_ssim_on_tiny_images_is_defined(tmp_path, capsys):
    for side in (1, 2, 4, 5, 6):
        x = torch.randint(0, 256, (3, 3, side, side), dtype=torch.uint8)
        assert ssim(x, x) == pytest.approx(1.0)
        assert -1 <= ssim(x, 255 - x) < 1
    g = torch.Generator().manual_seed(0)
    for side, status in ((4, 0), (1, 2)):  # 4x4: the smallest course images accepted (smaller: refused, one line)
        d = tmp_path / f"course{side}"
        d.mkdir()
        pair = tuple(torch.randint(0, 256, (8, 3, side, side), generator=g, dtype=torch.uint8) for _ in range(2))
        torch.save(pair, d / "train_data.pkl")
        torch.save(pair, d / "val_data.pkl")
        capsys.readouterr()
        assert main(["eval", "--engine", "1", "--data", f"course:{d}", "--json"]) == status
        out = capsys.readouterr()
        if status == 0:
            r = json.loads(out.out)
            assert r["n"] == 8 and np.isfinite(r["ssim"]) and np.isfinite(r["ssim_noisy"])
        else:
            assert "at least 4x4" in out.err and len(out.err.strip().splitlines()) == 1
