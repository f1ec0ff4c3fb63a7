"""`n2n-tui data make` and `n2n-tui eval`: real files in the course format, and one-line errors with exit status 2."""
import json
import subprocess
import sys

import pytest
import torch

from Miniproject_1.model import Model
from tui.cli import main


def test_data_make_writes_the_course_format(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "make", "--out", str(out), "--n-train", "40", "--n-val", "10", "--noise", "impulse"]) == 0
    a, b = torch.load(out / "train_data.pkl")  # exactly how the course's test.py reads it
    v, c = torch.load(out / "val_data.pkl")
    assert a.shape == b.shape == (40, 3, 32, 32) and a.dtype == torch.uint8
    assert v.shape == c.shape == (10, 3, 32, 32) and c.dtype == torch.uint8
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert "wrote" in capsys.readouterr().out


def test_eval_json_on_course_data(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "make", "--out", str(out), "--n-train", "4", "--n-val", "20"]) == 0
    w = tmp_path / "w.pth"
    Model().save(w)  # an untrained model is the identity: PSNR equals the noisy input's
    capsys.readouterr()
    assert main(["eval", "--engine", "1", "--weights", str(w), "--data", f"course:{out}", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 20 and r["psnr"] == pytest.approx(r["psnr_noisy"], abs=0.01)


@pytest.mark.parametrize("argv, msg", [
    (["eval", "--engine", "3", "--data", "sample"], "engine must be 1 or 2"),
    (["eval", "--engine", "1", "--weights", "/nonexistent.pth", "--data", "sample"], "no such file"),
    (["eval", "--engine", "1", "--data", "bogus:spec"], "bad data spec"),
    (["data", "make", "--out", "OUT", "--n-train", "-5"], "positive integer"),
    (["data", "make", "--out", "OUT", "--noise", "nope"], "bad noise 'nope'"),
    (["data", "make", "--out", "OUT", "--noise", "gaussian:x"], "gaussian:SIGMA (0-255)"),
    (["data", "make", "--out", "OUT", "--source", "course:/nonexistent"], "no such directory"),
    (["train", "--lr", "-1"], "positive number"),
    (["train", "--engine", "7"], "engine must be 1 or 2"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, msg):
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    p = subprocess.run([sys.executable, "-m", "tui.cli", *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert msg in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_eval_of_a_corrupt_checkpoint_is_exit_2_and_untouched(tmp_path, capsys):
    w = tmp_path / "bad.pth"
    w.write_bytes(b"\x80\x04junk")
    out = tmp_path / "data"
    main(["data", "make", "--out", str(out), "--n-train", "4", "--n-val", "4"])
    assert main(["eval", "--engine", "1", "--weights", str(w), "--data", f"course:{out}"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert w.read_bytes() == b"\x80\x04junk"


def test_data_make_into_a_file_path_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["data", "make", "--out", str(f), "--n-train", "4", "--n-val", "4"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_data_make_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "train_data.pkl").write_bytes(b"the course's own data")
    argv = ["data", "make", "--out", str(out), "--n-train", "4", "--n-val", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train_data.pkl already there" in err and "--force" in err
    assert (out / "train_data.pkl").read_bytes() == b"the course's own data" and not (out / "val_data.pkl").exists()
    assert main(argv + ["--force"]) == 0
    assert torch.load(out / "train_data.pkl", weights_only=True)[0].shape == (4, 3, 32, 32)
