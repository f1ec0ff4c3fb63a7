"""Figures and tables for a course report, from stored runs: ``n2n-tui report RUN [RUN...] --out DIR [--mark ...]``.

Writes, as PNG and PDF (matplotlib, Agg backend, imported on first use; the figures are ``sessions.report_figures``):

- ``loss``: training loss per step on a log scale with readable ticks: every step's loss as a light point and a
  centred mean through them (it neither lags nor leads; no mean reaches across a hyper-parameter change), the steps
  where a hyper-parameter was set by hand (dash-dot) and the best validation step (dotted), each in the legend; under
  it the learning rate, where it varied. Several runs overlaid;
- ``psnr``: validation PSNR per evaluation, the best so far, the best point starred, the noisy input's PSNR on the
  same validation images (the baseline a denoiser must beat), the reference marks (``--mark``, ``RUNS/marks.toml``)
  and the hyper-parameter changes;
- ``samples`` (``samples-<run>`` with several runs): the validation samples of one evaluation as rows of noisy /
  denoised / clean / error map (|denoised - clean|, with a colour bar), with each sample's PSNR;

and ``metrics.csv`` (``metrics-<run>.csv``: one row per step: step, epoch, loss, lr, psnr, and on evaluation rows the
best PSNR so far and the noisy input's PSNR) and ``summary.md`` (configuration, best PSNR and its gain over the noisy
input, the changes, time, images/s). Runs are named by their tag (``n2n-tui tag``) where they have one, else by id.
Every file is written atomically; existing ones only with ``force``. How to read them: docs/report.md.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from engine.config import RunConfig
from engine.errors import N2NError, first_line
from engine.fileio import atomic_write

from . import report_figures as figures
from .report_figures import best_point
from .store import Store, StoreError, settings_changes

ENGINES = {1: "Miniproject_1 (PyTorch U-Net)", 2: "Miniproject_2 (framework without autograd)"}
NOT_DRAWN = {"threads"}  # settings that do not change what is learnt: in the summary's table, not on the curves


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = []
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150)
        paths.append(atomic_write(out / f"{name}.{fmt}", lambda f, b=buf.getvalue(): f.write(b)))
    figures.plt().close(fig)
    return paths


def hand_changes(run: dict) -> list[tuple[int, list[tuple[str, float, float]]]]:
    """The hyper-parameters set during the run, by step: ``[(step, [(name, old, new), ...]), ...]``. The learning
    rate's old value is the one its last step used (under a schedule, not the base rate the settings history holds)."""
    lr_at = {m["step"]: m["lr"] for m in run.get("metrics", []) if m["lr"] is not None}
    by_step: dict[int, list] = {}
    for name, values in settings_changes(run.get("settings") or []).items():
        if name in NOT_DRAWN:
            continue
        for (_, old), (step, new) in zip(values, values[1:]):
            if name == "lr":
                old = lr_at.get(max((s for s in lr_at if s <= step), default=-1), old)
            by_step.setdefault(step, []).append((name, old, new))
    return sorted(by_step.items())


def noisy_baseline(run: dict, cache: dict | None = None) -> tuple[float | None, str]:
    """The PSNR of the run's noisy validation input against its targets, and where it came from: the value the
    trainer recorded, or (a run recorded before the store kept it) recomputed from the run's data settings, which
    rebuild the same validation images (they are seeded and drawn apart from the training pairs). ``cache``: values
    already recomputed, by data settings."""
    if run.get("psnr_noisy") is not None:
        return run["psnr_noisy"], "recorded by the trainer"
    if not any(m["psnr"] is not None for m in run.get("metrics", [])):
        return None, "not known (no evaluation recorded)"
    how = "recomputed from the run's data settings (the run was recorded before the store kept it)"
    try:
        cfg = RunConfig.from_dict(run["config"])
        key = (cfg.data, cfg.noise, cfg.seed, cfg.n_val)
        if cache is not None and key in cache:
            return cache[key], how
        from engine.data import load_data
        from engine.metrics import psnr

        ds = load_data(cfg.data, noise=cfg.noise, seed=cfg.seed, n_train=1, n_val=cfg.n_val)
        value = psnr(ds.val_input[:cfg.n_val], ds.val_target[:cfg.n_val])
    except (N2NError, OSError, ValueError, KeyError, TypeError) as e:
        return None, f"not known ({first_line(e, 120)})"
    if cache is not None:
        cache[key] = value
    return value, how


def prepare(runs: list[dict]) -> list[dict]:
    """Each run with its legend name (its tag, else its id; the id added where two tags are alike), its noisy
    baseline and where that came from, and its hyper-parameter changes."""
    tags, cache = [r.get("tag") or "" for r in runs], {}
    for run, tag in zip(runs, tags):
        run["name"] = (f"{tag} ({run['id']})" if tags.count(tag) > 1 else tag) if tag else run["id"]
        run["baseline"], run["baseline_source"] = noisy_baseline(run, cache)
        run["changes"] = hand_changes(run)
    return runs


CSV_COLUMNS = ("step", "epoch", "loss", "lr", "psnr", "best_psnr", "psnr_noisy")


def write_csv(run: dict, path: Path) -> Path:
    """A row per recorded step; ``best_psnr`` (the best so far) and ``psnr_noisy`` (the baseline: the noisy input's
    PSNR on the same validation images) on the rows of evaluations."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    best = None
    for m in run["metrics"]:
        row = {k: m[k] for k in CSV_COLUMNS[:5]}
        if m["psnr"] is not None:
            best = m["psnr"] if best is None else max(best, m["psnr"])
            row.update(best_psnr=best, psnr_noisy=run["baseline"])
        w.writerow(["" if row.get(k) is None else row[k] for k in CSV_COLUMNS])
    return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _duration(run: dict) -> float:
    end = run["ended"] or run["updated"]
    return max(0.0, end - run["started"])


def summary(runs: list[dict], files: dict[str, list[str]], marks=()) -> str:
    lines = ["# Training report", ""]
    for run in runs:
        cfg = run["config"]
        secs = _duration(run)
        batch = cfg.get("batch_size") or 32
        steps = run["step"]
        best, base = best_point(run), run["baseline"]
        lines += [f"## Run {run['id']}" + (f" «{run['tag']}»" if run.get("tag") else ""), "", "| | |", "| --- | --- |",
                  f"| engine | {run['engine']}: {ENGINES.get(run['engine'], '?')} |",
                  f"| data | {cfg.get('data')}" + ("" if str(cfg.get("data", "")).startswith("course:")
                                                   else f", noise {cfg.get('noise')}") + " |",
                  f"| configuration | {', '.join(f'{k}={v}' for k, v in cfg.items() if v is not None)} |",
                  f"| state | {run['state']} at step {steps}" + (f" of {run['total_steps']}" if run["total_steps"]
                                                                   else "") + f", epoch {run['epoch']} |",
                  "| best PSNR | " + (f"{best[1]:.2f} dB at step {best[0]}" if best else "no evaluation")
                  + (f" ({best[1] - base:+.2f} dB over the noisy input)" if best and base is not None else "") + " |",
                  "| noisy input PSNR | " + (f"{base:.2f} dB, " if base is not None else "")
                  + f"{run['baseline_source']} |",
                  f"| time | {int(secs // 60)} min {int(secs % 60)} s |",
                  f"| images/s | {steps * batch / secs:.0f} overall (steps x batch {batch} / wall time, evaluations "
                  f"included) |" if secs > 0 else "| images/s | - |",
                  ""]
        changed = settings_changes(run.get("settings") or [])  # the live hyper-parameters that changed
        if changed:
            lines += ["| setting | values (from step) |", "| --- | --- |"]
            lines += [f"| {k} | {' → '.join(f'{x:g} ({s})' for s, x in v)} |" for k, v in changed.items()]
            lines.append("")
        for f in files.get(run["id"], []):
            lines.append(f"![{f}]({f})" if f.endswith(".png") else f"- [{f}]({f})")
        lines.append("")
    lines += ["## Curves", "", "![loss](loss.png)", "",
              "Light points: the loss of each step; line: their centred mean (as many steps either side, so it does "
              "not lag). Dash-dot: a hyper-parameter set by hand at that step (the legend says which, from what to "
              "what); dotted: the step of the best validation PSNR.", "", "![psnr](psnr.png)", "",
              "Dashed grey: the noisy input's PSNR on the same validation images (what no denoising scores); thin "
              "dashed: the best so far; star: the best evaluation."
              + (" Dotted: the reference marks: " + "; ".join(f"{m.label or 'mark'} {m.psnr:g} dB" for m in marks)
                 + "." if marks else ""), ""]
    return "\n".join(lines)


def build_report(store: Store, refs: list[str], out: str | Path, *, step: int | None = None,
                 force: bool = False, marks=()) -> list[Path]:
    """Write the report of runs ``refs`` into folder ``out``, with the reference ``marks`` (``sessions.marks.Mark``)
    on the PSNR figure; returns the files written."""
    ids = []
    for ref in refs:
        run_id = store.resolve(ref)
        if run_id not in ids:
            ids.append(run_id)
    runs = [store.get_run(r) for r in ids]
    several = len(runs) > 1
    samples = {}
    for run in runs:
        s = store.samples(run["id"])
        if s["steps"]:
            best = best_point(run)
            want = step if step is not None else (best[0] if best and best[0] in s["steps"] else s["step"])
            samples[run["id"]] = store.samples(run["id"], want)
        elif step is not None:
            raise StoreError(f"run {run['id']} has no sample patches (recorded before n2n-tui kept them)")

    def names(run_id):
        tail = f"-{run_id}" if several else ""
        return [f"metrics{tail}.csv"] + ([f"samples{tail}.png", f"samples{tail}.pdf"] if run_id in samples else [])

    planned = ["loss.png", "loss.pdf", "psnr.png", "psnr.pdf", "summary.md"] + [n for r in ids for n in names(r)]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out}: exists and is not a folder")
    taken = [n for n in planned if (out / n).exists()]
    if taken and not force:
        raise StoreError(f"--out {out}: {taken[0]} exists" + (f" (and {len(taken) - 1} more)" if len(taken) > 1
                                                              else "") + "; use --force to replace")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"--out {out}: cannot create the folder ({e.strerror})") from None

    prepare(runs)
    written = _save(figures.loss_figure(runs), out, "loss") + _save(figures.psnr_figure(runs, marks), out, "psnr")
    files = {}
    for run in runs:
        tail = f"-{run['id']}" if several else ""
        written.append(write_csv(run, out / f"metrics{tail}.csv"))
        if run["id"] in samples:
            written += _save(figures.samples_figure(run, samples[run["id"]]), out, f"samples{tail}")
        files[run["id"]] = names(run["id"])
    text = summary(runs, files, marks)
    written.append(atomic_write(out / "summary.md", lambda f: f.write(text.encode())))
    return written
