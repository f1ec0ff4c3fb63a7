"""What the report's figures plot, read from the matplotlib Figures before they are saved: the noisy baseline, the
best so far, the marks and the hyper-parameter changes on the curves, each in the legend; a tagged run's legend
names the tag; the smoothed loss does not lag; the log axis has readable ticks; the error maps have a colour bar. And
where the baseline comes from: the store keeps it (schema 7; an older store is upgraded), or it is recomputed."""
from __future__ import annotations

import json
import math
import os
import sqlite3

import pytest
from test_report import NOISY, record_run

from engine.config import RunConfig
from engine.data import load_data
from engine.events import EvalEvent, StateEvent
from engine.metrics import psnr
from sessions import Recorder, Store
from sessions import report_figures as figures
from sessions.marks import Mark
from sessions.report import hand_changes, prepare
from sessions.store_file import SCHEMA, SCHEMA_VERSION


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs") as s:
        yield s


def legend(fig) -> list[str]:
    return [t.get_text() for lg in fig.legends for t in lg.get_texts()]


def close(fig):
    figures.plt().close(fig)


def test_the_psnr_figure_draws_the_baseline_the_best_so_far_the_marks_and_the_changes(store):
    run = record_run(store, changes={60: ("lr", 3e-3), 100: ("weight_decay", 1e-4)})
    runs = prepare([store.get_run(run)])
    fig = figures.psnr_figure(runs, [Mark(24.0, "course net"), Mark(27.5, "")])
    try:
        [base] = figures.lines(fig, "baseline")
        assert list(base.get_ydata()) == [NOISY, NOISY]
        assert base.get_label() == f"noisy input: {NOISY:.2f} dB (no denoising)"
        [curve] = figures.lines(fig, "psnr")
        [best] = figures.lines(fig, "best-so-far")
        values = list(curve.get_ydata())
        assert list(curve.get_xdata()) == [0, 40, 80, 120] and values[-1] < values[-2]  # the last one dropped
        assert list(best.get_ydata()) == values[:3] + [values[2]]                        # the best so far did not
        marks = figures.lines(fig, "mark")
        assert [m.get_ydata()[0] for m in marks] == [24.0, 27.5]
        assert [m.get_label() for m in marks] == ["course net: 24 dB", "mark: 27.5 dB"]
        changes = figures.lines(fig, "change")
        assert [c.get_xdata()[0] for c in changes] == [60, 100]
        assert [c.get_label() for c in changes] == ["1: step 60: lr 0.001 → 0.003",
                                                    "2: step 100: weight_decay 0 → 0.0001"]
        assert {"course net: 24 dB", f"noisy input: {NOISY:.2f} dB (no denoising)", "1: step 60: lr 0.001 → 0.003",
                f"{run}: validation PSNR", f"{run}: best so far"} <= set(legend(fig))
        lo, hi = fig.axes[0].get_ylim()
        assert lo < NOISY and hi > 27.5  # every reference line is in view
    finally:
        close(fig)


def test_the_loss_figure_marks_the_changes_and_the_best_step_and_shows_the_learning_rate(store):
    run = record_run(store, changes={60: ("lr", 3e-3), 100: ("batch_size", 64)})
    runs = prepare([store.get_run(run)])
    fig = figures.loss_figure(runs)
    try:
        loss_ax, lr_ax = fig.axes
        assert [c.get_xdata()[0] for c in figures.lines(fig, "change")] == [60, 100, 60, 100]  # on both panels
        assert [c.get_label() for c in figures.lines(fig, "change")][:2] == [
            "1: step 60: lr 0.001 → 0.003", "2: step 100: batch_size 32 → 64"]
        [best] = figures.lines(fig, "best-step")
        assert best.get_xdata()[0] == 80 and best.get_label() == "best validation PSNR, step 80"
        [lr] = figures.lines(fig, "lr")
        xs, ys = list(lr.get_xdata()), list(lr.get_ydata())
        assert ys[xs.index(60)] == 1e-3 and ys[xs.index(61)] == 3e-3
        [raw] = figures.lines(fig, "raw-loss")
        assert raw.get_linestyle() == "None" and raw.get_alpha() < 0.5 and len(raw.get_xdata()) == 120
        labels = legend(fig)
        assert f"{run}: loss at each step" in labels and "best validation PSNR, step 80" in labels
        assert any(t.startswith(f"{run}: centred mean of ") for t in labels)
        assert loss_ax.get_yscale() == "log" and len(loss_ax.get_yticks()) >= 3
    finally:
        close(fig)


def test_a_tagged_run_is_named_by_its_tag_and_alike_tags_keep_their_ids(store):
    a, b, c = record_run(store, samples=False), record_run(store, samples=False), record_run(store, samples=False)
    store.set_tag(a, "baseline U-Net")
    store.set_tag(b, "wide")
    store.set_tag(c, "wide")
    runs = prepare([store.get_run(r) for r in (a, b, c)])
    assert [r["name"] for r in runs] == ["baseline U-Net", f"wide ({b})", f"wide ({c})"]
    for make in (figures.loss_figure, figures.psnr_figure):
        fig = make(runs)
        try:
            labels = legend(fig)
            assert "baseline U-Net: validation PSNR" in labels or "baseline U-Net: loss at each step" in labels
            assert not any(t.startswith(a) for t in labels)  # the tag, not the raw id
        finally:
            close(fig)
    fig = figures.psnr_figure(runs)
    try:
        assert len(figures.lines(fig, "baseline")) == 1  # the same validation images: one baseline for all
    finally:
        close(fig)


def test_the_smoothed_loss_neither_lags_nor_smears_a_jump():
    steps = list(range(1, 201))
    decay = [0.3 * math.exp(-s / 30) for s in steps]  # a straight line on the log axis
    logs = figures.centred_mean(steps, [math.log(v) for v in decay], 20)
    assert [math.exp(v) for v in logs] == pytest.approx(decay, rel=1e-9)  # to the last step: no lag
    jump = [1.0] * 100 + [2.0] * 100  # a hyper-parameter changed after step 100
    smooth = figures.centred_mean(steps, jump, 20, breaks=[100])
    assert smooth == pytest.approx(jump)
    assert figures.centred_mean(steps, jump, 20)[99] == pytest.approx(1.5, abs=0.2)  # without the break: smeared
    flat = [1.0 + (0.5 if s % 2 else -0.5) for s in steps]  # noise about 1: the ends are smoothed too
    ends = figures.centred_mean(steps, flat, 20)
    assert abs(ends[0] - 1) < 0.2 and abs(ends[-1] - 1) < 0.2
    assert figures.half_window(120) == 4 and figures.half_window(100_000) == figures.MAX_HALF


@pytest.mark.parametrize("lo, hi", [(0.061, 0.29), (0.081, 0.089), (1e-4, 3.0), (0.5, 0.51)])
def test_log_axes_get_at_least_three_readable_ticks(lo, hi):
    ticks = figures.readable_log_ticks(lo, hi)
    assert len(ticks) >= 3 and all(lo <= t <= hi for t in ticks)
    assert all(len(f"{t:.3g}") <= 6 for t in ticks)


def test_the_error_maps_have_a_colour_bar(store):
    run = record_run(store)
    [r] = prepare([store.get_run(run)])
    fig = figures.samples_figure(r, store.samples(run, 80))
    try:
        assert len(fig.axes) == 3 * 4 + 1  # three rows of four panels, and the colour bar
        bar = fig.axes[-1]
        assert "error" in bar.get_ylabel() and bar.get_ylim() == (0, figures.ERROR_MAX)
        assert fig.axes[3].get_images()[0].get_clim() == (0, figures.ERROR_MAX)
    finally:
        close(fig)


def _schema6_store(tmp_path):
    """A store as schema 6 left it (no psnr_noisy column), with one finished run, 20240101-000000-aaaa."""
    root = tmp_path / "runs"
    root.mkdir()
    conn = sqlite3.connect(root / "sessions.sqlite")
    conn.executescript(SCHEMA.replace(",\n    psnr_noisy REAL", ""))
    conn.executemany("INSERT INTO n2n_meta VALUES (?, ?)", [("app", "n2n-tui"), ("schema", "6")])
    conn.execute("INSERT INTO runs (id, engine, config, state, started, updated) VALUES "
                 "('20240101-000000-aaaa', 1, ?, 'finished', 1, 2)", (json.dumps(RunConfig().to_dict()),))
    conn.commit()
    assert "psnr_noisy" not in [c[1] for c in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    return root


def test_an_older_store_is_upgraded_and_then_keeps_the_baseline(tmp_path):
    """A schema-6 store (before the baseline was kept): opened for writing it gains the column, its runs read None
    (the report recomputes theirs), and a new run's evaluations record it."""
    root = _schema6_store(tmp_path)
    with Store(root) as s:
        assert s.get_run("20240101-000000-aaaa")["psnr_noisy"] is None
        run = s.new_run(RunConfig())
        rec = Recorder(s, run)
        rec(EvalEvent(run, 0, 0, 12.0, 12.0, psnr_noisy=20.5))
        rec(StateEvent(run, "finished"))
        assert s.get_run(run)["psnr_noisy"] == 20.5
    conn = sqlite3.connect(root / "sessions.sqlite")
    assert conn.execute("SELECT value FROM n2n_meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)
    assert SCHEMA_VERSION == 7
    conn.close()


def test_runs_and_show_read_an_older_store_after_an_upgrade_and_say_why_where_they_cannot(tmp_path, capsys):
    """A read-only view (``runs``, ``show``, ``report``) of a schema-6 store upgrades it once where the folder may
    be written, instead of refusing until a training command came by; in a read-only folder it says what to do."""
    from tui.cli import main

    root = _schema6_store(tmp_path)
    os.chmod(root, 0o500)
    try:
        if not os.access(root, os.W_OK):  # (root writes into read-only folders: nothing to see there)
            assert main(["runs", "--runs-dir", str(root)]) == 2
            assert "an older session store" in capsys.readouterr().err
    finally:
        os.chmod(root, 0o700)
    assert main(["runs", "--runs-dir", str(root)]) == 0
    assert "20240101-000000-aaaa" in capsys.readouterr().out
    with Store(root, create=False, readonly=True) as s:
        assert s.get_run("20240101-000000-aaaa")["psnr_noisy"] is None


def test_a_run_recorded_without_the_baseline_gets_it_recomputed_from_its_data(store):
    run = record_run(store, steps=40, samples=False, noisy=None)
    row = store.get_run(run)
    row["config"]["n_val"] = 16  # small: the test loads it
    [r] = prepare([row])
    ds = load_data("sample", noise="gaussian:25", seed=0, n_val=16, n_train=1)
    assert r["baseline"] == pytest.approx(psnr(ds.val_input, ds.val_target))
    assert r["baseline_source"].startswith("recomputed")
    row = store.get_run(run)
    row["config"]["data"] = "course:/nonexistent"
    [r] = prepare([row])
    assert r["baseline"] is None and r["baseline_source"].startswith("not known (")


def test_a_rate_set_under_a_schedule_changes_from_the_rate_its_last_step_used():
    run = {"metrics": [dict(step=s, lr=1e-3 * (1 - s / 200)) for s in range(1, 121)],
           "settings": [dict(step=0, name="lr", value=1e-3), dict(step=0, name="threads", value=1.0),
                        dict(step=120, name="lr", value=5e-4), dict(step=130, name="threads", value=4.0)]}
    assert hand_changes(run) == [(120, [("lr", pytest.approx(4e-4), 5e-4)])]  # threads: not a hyper-parameter
    assert figures.change_text(hand_changes(run)[0][1]) == "lr 0.0004 → 0.0005"
