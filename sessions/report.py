"""Figures and tables for a course report, from stored runs: ``n2n-tui report RUN [RUN...] --out DIR``.

Writes, as PNG and PDF (matplotlib, Agg backend, imported on first use):

- ``loss``: training loss per step on a log scale (raw, and a moving average), several runs overlaid;
- ``psnr``: validation PSNR per evaluation, the best point of each run marked;
- ``samples`` (``samples-<run>`` with several runs): the validation samples of one evaluation as rows of noisy /
  denoised / clean / error map (|denoised - clean|, amplified), with each sample's PSNR;

and ``metrics.csv`` (``metrics-<run>.csv``: one row per step: step, epoch, loss, lr, psnr) and ``summary.md``
(configuration, best PSNR, time, images/s). Every file is written atomically; existing ones only with ``force``.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch

from engine.fileio import atomic_write
from engine.metrics import psnr_per_image

from .store import Store, StoreError, settings_changes

ERROR_GAIN = 4  # the error map shows |denoised - clean| x 4
SMOOTH = 50     # steps in the loss curve's moving average
ENGINES = {1: "Miniproject_1 (PyTorch U-Net)", 2: "Miniproject_2 (framework without autograd)"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = []
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150)
        paths.append(atomic_write(out / f"{name}.{fmt}", lambda f, b=buf.getvalue(): f.write(b)))
    _plt().close(fig)
    return paths


def _series(run: dict, key: str) -> tuple[list[int], list[float]]:
    points = [m for m in run["metrics"] if m[key] is not None and math.isfinite(m[key])]
    return [m["step"] for m in points], [m[key] for m in points]


def _moving_average(values: list[float], n: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - n] if i >= n else 0.0)
        out.append(total / min(i + 1, n))
    return out


def best_point(run: dict) -> tuple[int, float] | None:
    steps, values = _series(run, "psnr")
    if not values:
        return None
    i = max(range(len(values)), key=lambda k: (values[k], -steps[k]))
    return steps[i], values[i]


def loss_figure(runs: list[dict], out: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
    for run in runs:
        steps, loss = _series(run, "loss")
        if not loss:
            continue
        line, = ax.plot(steps, loss, lw=0.6, alpha=0.35)
        label = run["id"] if len(runs) > 1 else "loss"
        ax.plot(steps, _moving_average(loss, SMOOTH), lw=1.6, color=line.get_color(),
                label=f"{label} ({SMOOTH}-step mean)")
        best = best_point(run)
        if best is not None and best[0] in steps:
            ax.axvline(best[0], color=line.get_color(), ls=":", lw=1)
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="training loss (log scale)", title="Training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, "loss")


def psnr_figure(runs: list[dict], out: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
    for run in runs:
        steps, values = _series(run, "psnr")
        if not values:
            continue
        label = run["id"] if len(runs) > 1 else "validation PSNR"
        line, = ax.plot(steps, values, marker=".", lw=1.4, label=label)
        step, best = best_point(run)
        ax.plot([step], [best], marker="*", ms=14, color=line.get_color(), mec="black", mew=0.6, ls="none")
        ax.annotate(f"best {best:.2f} dB @ {step}", (step, best), textcoords="offset points", xytext=(-8, 8),
                    ha="right", fontsize=8)
    ax.margins(y=0.12)  # room for the labels of the best points
    ax.set(xlabel="step", ylabel="PSNR (dB)", title="Validation PSNR")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out, "psnr")


def samples_figure(run: dict, samples: dict, out: Path, name: str) -> list[Path]:
    """Rows of noisy / denoised / clean / error map for the patches of one evaluation."""
    plt = _plt()
    noisy, denoised, clean = (torch.from_numpy(samples[k]) for k in ("noisy", "denoised", "clean"))
    k = len(clean)
    p_noisy, p_den = psnr_per_image(noisy, clean), psnr_per_image(denoised, clean)
    error = (denoised.float() - clean.float()).abs().mean(1) * ERROR_GAIN
    fig, axes = plt.subplots(k, 4, figsize=(6.4, 1.7 * k), squeeze=False, layout="constrained")
    for i in range(k):
        panels = [(noisy[i], f"noisy {p_noisy[i]:.2f} dB"), (denoised[i], f"denoised {p_den[i]:.2f} dB"),
                  (clean[i], "clean"), (None, f"|error| x{ERROR_GAIN}")]
        for j, (img, title) in enumerate(panels):
            ax = axes[i][j]
            if img is None:
                ax.imshow(error[i].clamp(0, 255).numpy(), cmap="magma", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"run {run['id']}: validation samples at step {samples['step']}", fontsize=9)
    return _save(fig, out, name)


def write_csv(run: dict, path: Path) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "epoch", "loss", "lr", "psnr"])
    for m in run["metrics"]:
        w.writerow(["" if m[k] is None else m[k] for k in ("step", "epoch", "loss", "lr", "psnr")])
    return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _duration(run: dict) -> float:
    end = run["ended"] or run["updated"]
    return max(0.0, end - run["started"])


def summary(runs: list[dict], files: dict[str, list[str]]) -> str:
    lines = ["# Training report", ""]
    for run in runs:
        cfg = run["config"]
        secs = _duration(run)
        batch = cfg.get("batch_size") or 32
        steps = run["step"]
        best = best_point(run)
        lines += [f"## Run {run['id']}", "", "| | |", "| --- | --- |",
                  f"| engine | {run['engine']}: {ENGINES.get(run['engine'], '?')} |",
                  f"| data | {cfg.get('data')}" + ("" if str(cfg.get("data", "")).startswith("course:")
                                                   else f", noise {cfg.get('noise')}") + " |",
                  f"| configuration | {', '.join(f'{k}={v}' for k, v in cfg.items() if v is not None)} |",
                  f"| state | {run['state']} at step {steps}" + (f" of {run['total_steps']}" if run["total_steps"]
                                                                   else "") + f", epoch {run['epoch']} |",
                  "| best PSNR | " + (f"{best[1]:.2f} dB at step {best[0]}" if best else "no evaluation") + " |",
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
    lines += ["## Curves", "", "![loss](loss.png)", "", "![psnr](psnr.png)", ""]
    return "\n".join(lines)


def build_report(store: Store, refs: list[str], out: str | Path, *, step: int | None = None,
                 force: bool = False) -> list[Path]:
    """Write the report of runs ``refs`` into folder ``out``; returns the files written."""
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

    written = loss_figure(runs, out) + psnr_figure(runs, out)
    files = {}
    for run in runs:
        tail = f"-{run['id']}" if several else ""
        written.append(write_csv(run, out / f"metrics{tail}.csv"))
        if run["id"] in samples:
            written += samples_figure(run, samples[run["id"]], out, f"samples{tail}")
        files[run["id"]] = names(run["id"])
    text = summary(runs, files)
    written.append(atomic_write(out / "summary.md", lambda f: f.write(text.encode())))
    return written
