"""Crafted checkpoints cost one line, exit status 2 and bounded memory: shapes, widths and kernel sizes are checked
against the file's own tensors and sane bounds before anything is allocated. Every command runs in a subprocess under
an address-space limit, so an allocation blow-up fails the test instead of taking the machine down."""
from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys

import pytest
import torch

from Miniproject_2.others import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 6 << 30  # bytes of address space: torch and the eval need about 2 GiB; a blow-up asks for tens of GB


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def record(shape, data=b"", dtype="float32"):
    return {"__tensor__": 1, "dtype": dtype, "shape": shape, "byteorder": sys.byteorder, "data": data}


def mp2_file(path, params=None, config=None, payload=None):
    if isinstance(params, Nested):
        path.write_bytes(params.pickle())
        return path
    if payload is None:
        payload = {"format": "n2n-tui/miniproject2", "config": config or {"c1": 8, "c2": 8, "c3": 8, "k": 3,
                                                                           "loss": "l1"},
                   "params": params if params is not None else []}
    path.write_bytes(pickle.dumps({"format": checkpoint.FORMAT, "version": 1, "payload": payload}, protocol=4))
    return path


class Nested:
    """A checkpoint whose params are lists nested ``depth`` deep, written opcode by opcode (pickle's own writer
    recurses, so it cannot write what an unpickler reads without recursion)."""

    def __init__(self, depth):
        self.depth = depth

    def pickle(self) -> bytes:
        def text(t):
            b = t.encode()
            return b"X" + len(b).to_bytes(4, "little") + b

        lists = b"]" * self.depth + b"a" * (self.depth - 1)
        payload = b"}(" + text("format") + text("n2n-tui/miniproject2") + text("params") + lists + b"u"
        return (b"\x80\x02}(" + text("format") + text(checkpoint.FORMAT) + text("version") + b"K\x01"
                + text("payload") + payload + b"u.")


def nested(depth):
    return Nested(depth)


def small_params(c1=8, c2=8, c3=8, k=3):
    from Miniproject_2.model import param_shapes

    return [record(list(s), bytes(4 * torch.Size(s).numel())) for s in param_shapes(c1, c2, c3, k)]


CASES = {
    "a zero-size tensor record of absurd shape": dict(params=[record([0, 10 ** 30])]),
    "widths of 10**20": dict(config={"c1": 10 ** 20, "c2": 10 ** 20, "c3": 8, "k": 3, "loss": "l1"}),
    "widths of 10**6": dict(config={"c1": 10 ** 6, "c2": 10 ** 6, "c3": 10 ** 6, "k": 3, "loss": "l1"}),
    "a kernel of 10001": dict(config={"c1": 8, "c2": 8, "c3": 8, "k": 10001, "loss": "l1"}),
    "the widest allowed network with small tensors": dict(
        config={"c1": 4096, "c2": 4096, "c3": 4096, "k": 15, "loss": "l1"}, params=small_params()),
    "300 000 nested lists": dict(params=nested(300_000)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_crafted_miniproject2_checkpoint_is_one_line_and_bounded_memory(case, tmp_path):
    f = mp2_file(tmp_path / "evil.pth", **CASES[case])
    for argv in (["eval", "--engine", "2", "--weights", str(f), "--data", "sample", "--n-val", "4"],
                 ["denoise", str(_photo(tmp_path)), "-o", str(tmp_path / "out.png"), "--engine", "2", "--weights",
                  str(f)]):
        p = subprocess.run([sys.executable, "-m", "tui.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                           timeout=300, preexec_fn=_limited, env={**os.environ, "N2N_THREADS": "1"})
        err = p.stderr.strip()
        assert p.returncode == 2, (case, argv[0], p.returncode, err[-2000:])
        assert len(err.splitlines()) == 1 and "Traceback" not in err and "MemoryError" not in err, err[-2000:]
    assert not (tmp_path / "out.png").exists()


def _photo(tmp_path):
    from PIL import Image

    p = tmp_path / "photo.png"
    if not p.exists():
        Image.new("RGB", (40, 30), (120, 80, 40)).save(p)
    return p


def test_a_well_formed_small_checkpoint_still_loads(tmp_path):
    from Miniproject_2.model import Model

    f = mp2_file(tmp_path / "ok.pth", params=small_params())
    m = Model(device="cpu")
    m.load_pretrained_model(f)
    assert m.config["c1"] == 8 and m.loaded


@pytest.mark.parametrize("widths", [[0, 48, 64], [8] * 9, [5000], "abc", [True, 8]])
def test_miniproject1_widths_are_checked_without_building(widths):
    from Miniproject_1.model import Model

    with pytest.raises(ValueError, match="widths must be"):
        Model.check_options(widths=widths)
    with pytest.raises(ValueError, match="widths must be"):
        Model(widths=widths, device="cpu")


def test_a_miniproject1_checkpoint_with_huge_widths_but_small_tensors_is_refused(tmp_path):
    from Miniproject_1.model import Model

    m = Model(widths=(8, 16), device="cpu")
    state = m.state_dict(with_optimizer=False)
    state["config"]["widths"] = [4096] * 8
    path = tmp_path / "evil1.pth"
    torch.save(state, path)
    p = subprocess.run([sys.executable, "-m", "tui.cli", "eval", "--engine", "1", "--weights", str(path), "--data",
                        "sample", "--n-val", "4"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       preexec_fn=_limited, env={**os.environ, "N2N_THREADS": "1"})
    assert p.returncode == 2 and "do not fit the network its widths" in p.stderr, p.stderr[-2000:]
