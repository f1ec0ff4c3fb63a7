"""The report's figures (``sessions.report``), built as matplotlib Figures that ``build_report`` saves, so a test can
read what each one plots: every line carries a ``gid`` naming what it is (``LINE_KINDS``) and a legend label.

Each run here is a store run dict (``Store.get_run``) with three more keys that ``sessions.report`` adds: ``name``
(its tag, or its id), ``baseline`` (the noisy validation input's PSNR, or None) and ``changes`` (``[(step, [(name,
old, new), ...]), ...]``: the hyper-parameters set by hand during the run).
"""
from __future__ import annotations

import math

import torch

from engine.metrics import psnr_per_image

ERROR_MAX = 64   # the error map's colour scale: |denoised - clean| from 0 to this (of 255), brighter clipped
MAX_HALF = 50    # the loss curve's centred mean spans at most 2 x 50 + 1 steps
# what each line of a figure shows (its gid)
LINE_KINDS = ("raw-loss", "mean-loss", "lr", "best-step", "change", "psnr", "best-so-far", "best-point", "baseline",
              "mark")


def plt():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as pyplot

    return pyplot


def lines(fig, kind: str) -> list:
    """The lines of ``fig`` (all its axes) that show ``kind`` (one of ``LINE_KINDS``)."""
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == kind]


def series(run: dict, key: str) -> tuple[list[int], list[float]]:
    points = [m for m in run["metrics"] if m[key] is not None and math.isfinite(m[key])]
    return [m["step"] for m in points], [m[key] for m in points]


def best_point(run: dict) -> tuple[int, float] | None:
    steps, values = series(run, "psnr")
    if not values:
        return None
    i = max(range(len(values)), key=lambda k: (values[k], -steps[k]))
    return steps[i], values[i]


def best_so_far(values: list[float]) -> list[float]:
    out, best = [], -math.inf
    for v in values:
        best = max(best, v)
        out.append(best)
    return out


def half_window(n: int) -> int:
    """Half the centred mean's width for a curve of ``n`` points: about a thirtieth of the run, 1 to ``MAX_HALF``."""
    return max(1, min(n // 30, MAX_HALF))


def centred_mean(steps: list[int], values: list[float], half: int, breaks=()) -> list[float]:
    """Each point smoothed over the points up to ``half`` either side of it, without lag: a straight line fitted to
    them, read at the point. Where all ``2 * half + 1`` are there, that is their mean; near an end the window is cut
    there, and the line (unlike a mean of the points on one side) does not drag the curve toward the inside: no lag at
    the last step. ``breaks``: steps after which a new segment starts (a hyper-parameter changed there); no window
    reaches across one, so a jump stays a jump."""
    import numpy as np

    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return []
    x = x - x[0]  # small numbers: the sums below lose nothing
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (x, y, x * x, x * y)]
    out = np.empty_like(y)
    cuts = np.searchsorted(x, np.asarray(sorted(set(breaks)), dtype=np.float64) - steps[0], side="right")
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < len(x)}), len(x)]
    for a, b in zip(bounds, bounds[1:]):
        idx = np.arange(a, b)
        lo, hi = np.maximum(idx - half, a), np.minimum(idx + half + 1, b)
        sx, sy, sxx, sxy = ((c[hi] - c[lo]) / (hi - lo) for c in sums)
        var = sxx - sx * sx
        slope = np.divide(sxy - sx * sy, var, out=np.zeros_like(var), where=var > 1e-9)
        out[a:b] = sy + slope * (x[idx] - sx)
    return out.tolist()


def readable_log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis from ``lo`` to ``hi`` (> 0): powers of ten where the axis spans several decades,
    then 1-2-5, then every digit, and evenly spaced round values where it spans less than that: never fewer than 3."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for subs in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in subs if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 4:
            return ticks
    from matplotlib.ticker import MaxNLocator

    return [t for t in MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]


def _log_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    lo, hi = ax.get_ylim()
    ax.set_yticks(readable_log_ticks(lo, hi))
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _kind_colour(run_colour: str, kind: str, several: bool) -> str:
    """One run: a colour per kind of marker; several: the run's own (the line style tells the kind)."""
    return run_colour if several else {"best": "tab:green", "change": "tab:red"}[kind]


def change_text(changes: list[tuple[str, float, float]]) -> str:
    return ", ".join(f"{name} {old:.3g} → {new:.3g}" for name, old, new in changes)


def _markers(ax, run: dict, colour: str, several: bool, *, legend: bool, best_line: bool, first: int = 1) -> int:
    """The steps where a hyper-parameter was set by hand (dash-dot, numbered above the plot from ``first``, the
    legend saying what changed) and, with ``best_line``, the step of the best validation PSNR (dotted). Returns the
    next number."""
    prefix = f"{run['name']}: " if several else ""
    for k, (step, what) in enumerate(run["changes"], first):
        c = _kind_colour(colour, "change", several)
        ax.axvline(step, color=c, ls="-.", lw=1, gid="change",
                   label=f"{k}: {prefix}step {step}: {change_text(what)}" if legend else None)
        if legend:  # the number above the top edge, where no data is
            ax.annotate(str(k), xy=(step, 1), xytext=(0, 1.5), xycoords=("data", "axes fraction"),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7, color=c, fontweight="bold")
    best = best_point(run)
    if best_line and best is not None:
        ax.axvline(best[0], color=_kind_colour(colour, "best", several), ls=":", lw=1.2, gid="best-step",
                   label=f"{prefix}best validation PSNR, step {best[0]}" if legend else None)
    return first + len(run["changes"])


def _legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2 if len(handles) > 3 else 1, fontsize=7,
                   frameon=False)


def loss_figure(runs: list[dict]):
    """Training loss per step on a log scale: every step's loss as a light point, a centred mean through them, the
    hyper-parameter changes and the best step marked; below it the learning rate when it varied."""
    pyplot = plt()
    lr_varies = any(len(set(series(r, "lr")[1])) > 1 for r in runs)
    fig = pyplot.figure(figsize=(7, 5.6 if lr_varies else 5), layout="constrained")
    if lr_varies:
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    else:
        ax, ax_lr = fig.subplots(), None
    several, number = len(runs) > 1, 1
    for run in runs:
        steps, loss = series(run, "loss")
        steps, loss = [s for s, v in zip(steps, loss) if v > 0], [v for v in loss if v > 0]  # a log axis
        if not loss:
            continue
        points, = ax.plot(steps, loss, ls="none", marker=".", ms=2.5, alpha=0.3, rasterized=True, gid="raw-loss",
                          label=f"{run['name']}: loss at each step")
        colour = points.get_color()
        half = half_window(len(loss))
        mean = centred_mean(steps, [math.log(v) for v in loss], half, [s for s, _ in run["changes"]])
        ax.plot(steps, [math.exp(v) for v in mean], lw=1.6, color=colour, gid="mean-loss",
                label=f"{run['name']}: centred mean of {2 * half + 1} steps (of log loss)")
        number = _markers(ax, run, colour, several, legend=True, best_line=True, first=number)
        if ax_lr is not None:
            lr_steps, lr = series(run, "lr")
            ax_lr.plot(lr_steps, lr, lw=1.2, color=colour, drawstyle="steps-post", gid="lr")
            _markers(ax_lr, run, colour, several, legend=False, best_line=False)
    ax.set_yscale("log")
    if ax.get_lines():
        _log_axis(ax)
    ax.set_ylabel("training loss (log scale)")
    ax.set_title("Training loss" + ("" if several else f": {runs[0]['name']}"), pad=12)  # room for the numbers
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)
    if ax_lr is not None:
        ax_lr.set(xlabel="step", ylabel="learning rate")
        ax_lr.set_ylim(bottom=0)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax_lr.grid(True, alpha=0.3)
    else:
        ax.set_xlabel("step")
    ax.set_xlim(left=0)
    _legend(fig, ax)
    return fig


def psnr_figure(runs: list[dict], marks=()):
    """Validation PSNR per evaluation, the best so far, the best point starred, the noisy input's PSNR on the same
    images (what doing nothing scores), the user's reference marks and the hyper-parameter changes."""
    pyplot = plt()
    fig = pyplot.figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    several, number = len(runs) > 1, 1
    last = max((series(r, "psnr")[0][-1] for r in runs if series(r, "psnr")[0]), default=0)
    shared = len({round(r["baseline"], 2) for r in runs if r["baseline"] is not None}) == 1
    drawn = False
    for run in runs:
        steps, values = series(run, "psnr")
        if not values:
            continue
        line, = ax.plot(steps, values, marker=".", lw=1.4, gid="psnr", label=f"{run['name']}: validation PSNR")
        colour = line.get_color()
        ax.plot(steps, best_so_far(values), lw=1, ls="--", color=colour, alpha=0.7, drawstyle="steps-post",
                gid="best-so-far", label=f"{run['name']}: best so far")
        step, best = best_point(run)
        ax.plot([step], [best], marker="*", ms=14, color=colour, mec="black", mew=0.6, ls="none", gid="best-point")
        left = step < 0.4 * last  # the label on the side with room, inside the plot
        ax.annotate(f"best {best:.2f} dB @ {step}", (step, best), textcoords="offset points",
                    xytext=(8 if left else -8, 8), ha="left" if left else "right", fontsize=8)
        if run["baseline"] is not None and not (shared and drawn):
            who = "" if shared else f" ({run['name']})"  # runs on the same images share one line
            ax.axhline(run["baseline"], color="0.35" if shared else colour, ls="--", lw=1.2, gid="baseline",
                       label=f"noisy input{who}: {run['baseline']:.2f} dB (no denoising)")
            drawn = True
        number = _markers(ax, run, colour, several, legend=True, best_line=False, first=number)
    for i, mark in enumerate(marks):
        ax.axhline(mark.psnr, color=f"C{(i + 5) % 10}", ls=":", lw=1.3, gid="mark",
                   label=f"{mark.label or 'mark'}: {mark.psnr:g} dB")
    ax.margins(y=0.12)  # room for the labels of the best points
    ax.set(xlabel="step", ylabel="PSNR (dB)")
    ax.set_title("Validation PSNR" + ("" if several else f": {runs[0]['name']}"), pad=12)
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    _legend(fig, ax)
    return fig


def samples_figure(run: dict, samples: dict):
    """Rows of noisy / denoised / clean / error map for the patches of one evaluation; the error maps share one
    colour bar in the units of the images (0-255)."""
    pyplot = plt()
    noisy, denoised, clean = (torch.from_numpy(samples[k]) for k in ("noisy", "denoised", "clean"))
    k = len(clean)
    p_noisy, p_den = psnr_per_image(noisy, clean), psnr_per_image(denoised, clean)
    error = (denoised.float() - clean.float()).abs().mean(1)
    fig, axes = pyplot.subplots(k, 4, figsize=(7, 1.7 * k + 0.4), squeeze=False, layout="constrained")
    shown = None
    for i in range(k):
        panels = [(noisy[i], f"noisy {p_noisy[i]:.2f} dB"), (denoised[i], f"denoised {p_den[i]:.2f} dB"),
                  (clean[i], "clean"), (None, "|denoised − clean|")]
        for j, (img, title) in enumerate(panels):
            ax = axes[i][j]
            if img is None:
                shown = ax.imshow(error[i].numpy(), cmap="magma", vmin=0, vmax=ERROR_MAX, interpolation="nearest")
            else:
                ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    bar = fig.colorbar(shown, ax=axes[:, 3], extend="max", shrink=0.9 if k > 1 else 1.0)
    bar.set_label("mean |error| over RGB (of 255)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"run {run['name']}: validation samples at step {samples['step']}", fontsize=9)
    return fig
