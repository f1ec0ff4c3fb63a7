"""``n2n-tui report``: loss and PSNR figures (PNG and PDF), the samples grid of any recorded evaluation,
metrics.csv matching the store row for row (with the best so far and the noisy baseline), summary.md with the tag, the
baseline and the marks; one-line errors for unknown runs, existing files and bad marks. What the figures plot:
tests/test_report_figures.py."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from PIL import Image

from engine.config import RunConfig
from engine.events import ControlEvent, EvalEvent, StateEvent, StepEvent
from sessions import Recorder, Store
from tui.cli import main


def patches(step: int):
    g = torch.Generator().manual_seed(step)
    clean = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    noisy = (clean.float() + torch.randn(clean.shape, generator=g) * 30).clamp(0, 255).to(torch.uint8)
    denoised = ((clean.float() + noisy.float()) / 2).to(torch.uint8)
    return noisy, denoised, clean


NOISY = 18.25  # the noisy validation input's PSNR the trainer reports


def record_run(store: Store, steps: int = 120, every: int = 40, scale: float = 1.0, samples: bool = True,
               changes: dict | None = None, noisy: float | None = NOISY) -> str:
    """A finished run as the trainer records it; ``changes``: {step: (name, new value)} set by hand after that step
    (the lr by ``ctl lr``, anything else by ``ctl set``)."""
    run = store.new_run(RunConfig(noise="gaussian:25", loss="l2"))
    store.record_settings(run, 0, {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 32})
    rec = Recorder(store, run)
    rec(StateEvent(run, "running"))
    best, lr, changes = None, 1e-3, changes or {}
    for s in range(0, steps + 1):
        if s:
            rec(StepEvent(run, s, 1 + s // 100, scale * (0.05 * math.exp(-s / 40) + 0.01), lr, 500.0, steps))
        if s % every == 0:
            p = 20 + 6 * (1 - math.exp(-s / 50)) - (1.0 if s == steps else 0)  # the last one is not the best
            best = p if best is None else max(best, p)
            rec(EvalEvent(run, s, 1 + s // 100, p, best, *(patches(s) if samples else (None,) * 3), psnr_noisy=noisy))
        if s in changes:
            name, value = changes[s]
            lr = value if name == "lr" else lr
            rec(ControlEvent(run, "lr" if name == "lr" else "set", f"-> {value:g}", s, value=value, name=name))
    rec(StateEvent(run, "finished", step=steps))
    return run


@pytest.fixture
def runs(tmp_path):
    with Store(tmp_path / "runs") as s:
        yield s, tmp_path / "runs"


def report(capsys, *argv):
    capsys.readouterr()
    status = main(["report", *map(str, argv)])
    return status, capsys.readouterr()


def test_report_of_one_run(tmp_path, capsys, runs):
    store, runs_dir = runs
    run = record_run(store)
    status, out = report(capsys, run[:15], "--out", tmp_path / "rep", "--runs-dir", runs_dir)
    assert status == 0, out.err
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert files == ["loss.pdf", "loss.png", "metrics.csv", "psnr.pdf", "psnr.png", "samples.pdf", "samples.png",
                     "summary.md"]
    for name in ("loss", "psnr", "samples"):
        with Image.open(tmp_path / "rep" / f"{name}.png") as im:
            im.verify()
        pdf = (tmp_path / "rep" / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-64:]
    with Image.open(tmp_path / "rep" / "samples.png") as im:
        assert min(im.size) > 300  # three rows of four panels at 150 dpi
    rows = list(csv.DictReader((tmp_path / "rep" / "metrics.csv").open()))
    stored = store.get_run(run)["metrics"]
    assert len(rows) == len(stored) == 121
    best = None
    for row, m in zip(rows, stored):
        assert list(row) == ["step", "epoch", "loss", "lr", "psnr", "best_psnr", "psnr_noisy"]
        for k in ("step", "epoch", "loss", "lr", "psnr"):
            assert (row[k] == "") if m[k] is None else float(row[k]) == pytest.approx(m[k], rel=1e-12)
        if m["psnr"] is None:  # a training step: no evaluation, no baseline
            assert row["best_psnr"] == row["psnr_noisy"] == ""
        else:  # an evaluation: the best so far and the noisy input's PSNR on the same images beside it
            best = m["psnr"] if best is None else max(best, m["psnr"])
            assert float(row["best_psnr"]) == pytest.approx(best) and float(row["psnr_noisy"]) == NOISY
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert f"## Run {run}" in summary and "best PSNR | 24.79 dB at step 80 (+6.54 dB over the noisy input)" in summary
    assert "| noisy input PSNR | 18.25 dB, recorded by the trainer |" in summary
    assert "noise gaussian:25" in summary and "images/s" in summary and "![samples.png](samples.png)" in summary


def test_report_overlays_several_runs_and_picks_any_step(tmp_path, capsys, runs):
    store, runs_dir = runs
    a, b = record_run(store), record_run(store, steps=80, scale=2.0, samples=False)
    status, out = report(capsys, a, b, "--out", tmp_path / "rep", "--runs-dir", runs_dir)
    assert status == 0, out.err
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {f"metrics-{a}.csv", f"metrics-{b}.csv", f"samples-{a}.png", "loss.png", "psnr.png"} <= files
    assert f"samples-{b}.png" not in files  # recorded without patches: no grid, the rest still there
    status, out = report(capsys, a, "--step", 40, "--out", tmp_path / "step40", "--runs-dir", runs_dir)
    assert status == 0 and (tmp_path / "step40" / "samples.png").is_file()


def test_report_errors_are_one_line(tmp_path, capsys, runs):
    store, runs_dir = runs
    run = record_run(store)
    status, out = report(capsys, "nosuchrun", "--out", tmp_path / "rep", "--runs-dir", runs_dir)
    assert status == 2 and "no run matches 'nosuchrun'" in out.err
    assert report(capsys, run, "--out", tmp_path / "rep", "--runs-dir", runs_dir)[0] == 0
    before = (tmp_path / "rep" / "loss.png").read_bytes()
    status, out = report(capsys, run, "--out", tmp_path / "rep", "--runs-dir", runs_dir)
    assert status == 2 and "loss.png exists" in out.err and "--force" in out.err
    assert (tmp_path / "rep" / "loss.png").read_bytes() == before
    assert report(capsys, run, "--out", tmp_path / "rep", "--runs-dir", runs_dir, "--force")[0] == 0
    status, out = report(capsys, run, "--step", 41, "--out", tmp_path / "r2", "--runs-dir", runs_dir)
    assert status == 2 and "no sample patches at step 41" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_report_names_the_tag_and_draws_the_marks(tmp_path, capsys, runs):
    store, runs_dir = runs
    run = record_run(store, changes={60: ("lr", 3e-3), 90: ("weight_decay", 1e-4)})
    store.set_tag(run, "lr 3x at step 60")
    (runs_dir / "marks.toml").write_text('[[mark]]\npsnr = 27.5\nlabel = "BM3D"\n')
    status, out = report(capsys, "last", "--out", tmp_path / "rep", "--mark", "24:course net", "--runs-dir", runs_dir)
    assert status == 0, out.err
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert f"## Run {run} «lr 3x at step 60»" in summary
    assert "reference marks: course net 24 dB; BM3D 27.5 dB" in summary
    assert "| lr | 0.001 (0) → 0.003 (60) |" in summary and "| weight_decay | 0 (0) → 0.0001 (90) |" in summary


def test_a_bad_mark_is_one_line_and_writes_nothing(tmp_path, capsys, runs):
    store, runs_dir = runs
    record_run(store, samples=False)
    status, out = report(capsys, "last", "--out", tmp_path / "rep", "--mark", "240:too high", "--runs-dir", runs_dir)
    assert status == 2 and "--mark '240:too high'" in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()
    (runs_dir / "marks.toml").write_text("[[mark]]\npsnr = 'x'\n")
    status, out = report(capsys, "last", "--out", tmp_path / "rep", "--runs-dir", runs_dir)
    assert status == 2 and "marks.toml, mark 1" in out.err and not (tmp_path / "rep").exists()
