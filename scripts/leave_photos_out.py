"""Leave-photos-out cross-validation of Miniproject_1 over the 20 `sample` photographs (docs/training.md, issue 25).

    python scripts/leave_photos_out.py --subset 8000 --epochs 2 --work /tmp/lpo     # the documented run
    python scripts/leave_photos_out.py --work /tmp/lpo --tables                     # reprint its tables
    python scripts/leave_photos_out.py --folds-only                                 # print the folds, train nothing

Why: the shipped weights trained on the 16 photos of ``engine.data.SAMPLE_TRAIN`` and were validated on the 4 of
``SAMPLE_VAL``; four photos say little about photographs in general, and no other photo collection is installed. So
the 20 photos, sorted by name, go round-robin into 4 folds of 5. For fold k the other 15 are copied into
``WORK/fold_k/train`` and fold k's 5 into ``WORK/fold_k/test``; engine 1 trains on ``images:train`` (photos only) and
on ``images:train@0.5+leaves@0.5`` (photos mixed with procedural dead leaves), each with the product's own
``n2n-tui train`` and the same budget, two runs at a time, one torch thread each. ``images:DIR`` itself holds the
first fifth of a folder's photos out for its validation (best-checkpoint choice), so each run trains on 12 photos
and picks its checkpoint on 3 (printed below); the test photos are never read while training.

Every trained run, and the shipped ``Miniproject_1/bestmodel.pth``, is then measured with ``n2n-tui eval --full`` on
its fold's whole test photos, for each noise family at a fixed mid strength (level 0.5 of ``engine.noise``: the
strengths of scripts/eval_families.py) and for ``mix`` (a random family and strength per photo). All models of a
fold see the very same noisy photos (``eval --full`` seeds the noise by the photo's place in the folder), so
differences between models are paired. The shipped file's trained-on photos against its never-seen ones, each
compared with the cross-validated model that never saw either, measure how much it memorised.

Everything goes to ``WORK/results.json`` as it finishes; a rerun with the same ``--work`` skips what is there, so
an interrupted run continues. The tables are computed from that file only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.data import SAMPLE_TRAIN, SAMPLE_VAL, image_files, sample_dir  # noqa: E402
from engine.noise import fixed_specs as noise_specs  # noqa: E402

N_FOLDS = 4
FAMILIES = ("gaussian", "poisson", "impulse", "pixelate", "blocky")
DATAS = {"photos": "images:{train}", "photos+leaves": "images:{train}@0.5+leaves@0.5"}
MODELS = (*DATAS, "shipped")


def photo_names() -> list[str]:
    return sorted(SAMPLE_TRAIN + SAMPLE_VAL)


def folds(names: list[str], n: int = N_FOLDS) -> list[list[str]]:
    """Round-robin over the sorted names: photo i goes to fold i mod n."""
    names = sorted(names)
    return [names[k::n] for k in range(n)]


def make_folders(work: Path, fold_list: list[list[str]]) -> list[tuple[Path, Path]]:
    """WORK/fold_k/{train,test}: copies of the photos (fresh each time, so a folder never holds a stray file)."""
    src = sample_dir()
    out = []
    for k, test in enumerate(fold_list):
        train_dir, test_dir = work / f"fold_{k}" / "train", work / f"fold_{k}" / "test"
        for d, names in ((train_dir, [n for f in fold_list for n in f if n not in test]), (test_dir, test)):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            for name in names:
                shutil.copyfile(src / name, d / name)
        out.append((train_dir, test_dir))
    return out


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", *args]


def run_pool(jobs: list[tuple[str, list[str]]], parallel: int, done) -> None:
    """Run (key, argv) jobs ``parallel`` at a time; ``done(key, stdout, seconds, returncode)`` as each ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    pending, live = list(jobs), []
    while pending or live:
        while pending and len(live) < parallel:
            key, argv = pending.pop(0)
            out, err = tempfile.TemporaryFile(mode="w+"), tempfile.TemporaryFile(mode="w+")
            live.append((key, subprocess.Popen(argv, stdout=out, stderr=err, text=True, cwd=ROOT, env=env),
                         (out, err), time.time()))
        time.sleep(0.5)
        for item in list(live):
            key, proc, files, t0 = item
            if proc.poll() is None:
                continue
            live.remove(item)
            text, err = [(f.seek(0), f.read(), f.close())[1] for f in files]
            if proc.returncode:
                print(f"  {key}: exit {proc.returncode}: {err.strip().splitlines()[-1:]}", flush=True)
            done(key, text, time.time() - t0, proc.returncode)


def train_summary(stdout: str, seconds: float) -> dict:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    steps = [e for e in events if e.get("event") == "step"]
    evals = [e for e in events if e.get("event") == "eval"]
    states = [e.get("state") for e in events if e.get("event") == "state"]
    return {"run": next(e["run"] for e in events if "run" in e), "wall_s": round(seconds, 1),
            "steps": steps[-1]["step"] if steps else 0, "final_state": states[-1] if states else None,
            "best_val_psnr": evals[-1]["best_psnr"] if evals else None}


def experiment(a, results: dict, save) -> None:
    fold_list = folds(photo_names())
    dirs = make_folders(a.work, fold_list)
    runs_dir = a.work / "runs"
    common = ["--noise", "mix", "--subset", str(a.subset), "--epochs", str(a.epochs), "--threads", "1",
              "--eval-every", str(a.eval_every), "--n-val", str(a.n_val),
              "--runs-dir", str(runs_dir), "--seed", str(a.seed)]
    jobs = []
    for k, (train_dir, _) in enumerate(dirs):
        for name, form in DATAS.items():
            key = f"fold_{k}/{name}"
            if key not in results["train"]:
                spec = form.format(train=train_dir)
                jobs.append((key, cli("train", "--headless", "--json", "--engine", "1", "--data", spec, *common)))
    print(f"training {len(jobs)} runs, {a.parallel} at a time ({a.subset} pairs x {a.epochs} epochs each); "
          f"load average {loadavg()}", flush=True)

    def trained(key, stdout, seconds, rc):
        if rc == 0:
            results["train"][key] = train_summary(stdout, seconds)
            save()
            r = results["train"][key]
            print(f"  {key}: run {r['run']}, {r['steps']} steps, {r['wall_s']:.0f} s, best val "
                  f"{r['best_val_psnr']:.2f} dB (its own validation crops)", flush=True)

    run_pool(jobs, a.parallel, trained)
    specs = noise_specs()
    jobs = []
    for k, (_, test_dir) in enumerate(dirs):
        for model in MODELS:
            if model != "shipped" and f"fold_{k}/{model}" not in results["train"]:
                continue
            weights = [] if model == "shipped" else ["--weights", results["train"][f"fold_{k}/{model}"]["run"]]
            for family, spec in specs.items():
                key = f"fold_{k}/{model}/{family}"
                if key not in results["eval"]:
                    jobs.append((key, cli("eval", "--engine", "1", *weights, "--runs-dir", str(runs_dir), "--data",
                                          f"images:{test_dir}", "--noise", spec, "--full", "--json",
                                          "--threads", "1", "--seed", str(a.seed))))
    print(f"evaluating: {len(jobs)} eval --full calls, {a.parallel} at a time; load average {loadavg()}", flush=True)

    def evaluated(key, stdout, seconds, rc):
        if rc == 0:
            r = json.loads(stdout.strip().splitlines()[-1])
            results["eval"][key] = {"noise": r["noise"], "seconds": round(seconds, 1),
                                    "images": {im["name"]: {"psnr": im["psnr"], "psnr_noisy": im["psnr_noisy"]}
                                               for im in r["images"]}}
            save()

    run_pool(jobs, a.parallel, evaluated)


# ---------------------------------------------------------------------------------------------------------- tables

def per_photo(results: dict) -> dict[str, dict[str, dict[str, float]]]:
    """{family: {photo: {"noisy", "photos", "photos+leaves", "shipped", "fold"}}} from the stored evaluations."""
    out: dict = {}
    for key, r in results["eval"].items():
        fold, model, family = key.split("/")
        for photo, v in r["images"].items():
            row = out.setdefault(family, {}).setdefault(photo, {"fold": int(fold.split("_")[1])})
            row[model] = v["psnr"]
            row["noisy"] = v["psnr_noisy"]
    return out


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _median(values: list[float]) -> float | None:
    v = sorted(values)
    return None if not v else (v[len(v) // 2] + v[(len(v) - 1) // 2]) / 2


def _f(v: float | None, signed: bool = False) -> str:
    return "–" if v is None else (f"{v:+.2f}" if signed else f"{v:.2f}")


def tables(results: dict) -> str:
    pp = per_photo(results)
    fams = [f for f in (*FAMILIES, "mix") if f in pp]
    specs = results.get("specs", {})
    seen = set(SAMPLE_TRAIN)
    lines = ["### Held-out photos: every photo measured by the models that never saw it", "",
             "Mean PSNR (dB) over the photos, each held out exactly once (n = photos measured).", "",
             "| noise | n | noisy input | photos only | photos + leaves | leaves - photos | median per photo | "
             "photos+leaves better on |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in fams:
        rows = [r for r in pp[f].values() if "photos" in r and "photos+leaves" in r]
        d = [r["photos+leaves"] - r["photos"] for r in rows]
        lines.append(f"| {specs.get(f, f)} | {len(rows)} | {_f(_mean([r['noisy'] for r in rows]))} | "
                     f"{_f(_mean([r['photos'] for r in rows]))} | {_f(_mean([r['photos+leaves'] for r in rows]))} | "
                     f"{_f(_mean(d), True)} | {_f(_median(d), True)} | {sum(x > 0 for x in d)} of {len(d)} |")
    lines += ["", "### The shipped file: its 16 training photos against its 4 held-out ones", "",
              "Same photos, same noisy images. `cv` is the photos-only cross-validated model, which never saw the "
              "photo; `gap` = (shipped - cv on its training photos) - (shipped - cv on its held-out photos): how much "
              "more the shipped file gains on photos it trained on.", "",
              "| noise | trained on: noisy | shipped | cv | shipped - cv | held out: noisy | shipped | cv | "
              "shipped - cv | gap |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in fams:
        cells, adv = [], []
        for group in (True, False):
            rows = [r for p, r in pp[f].items() if (p in seen) == group and "shipped" in r and "photos" in r]
            a = _mean([r["shipped"] - r["photos"] for r in rows])
            adv.append(a)
            cells += [_f(_mean([r["noisy"] for r in rows])), _f(_mean([r["shipped"] for r in rows])),
                      _f(_mean([r["photos"] for r in rows])), _f(a, True)]
        gap = None if None in adv else adv[0] - adv[1]
        lines.append(f"| {specs.get(f, f)} | " + " | ".join(cells) + f" | {_f(gap, True)} |")
    fixed = [f for f in FAMILIES if f in pp]
    adv = {}
    for p in sorted({p for f in fixed for p in pp[f]}):
        rows = [pp[f][p] for f in fixed if p in pp[f] and "shipped" in pp[f][p] and "photos" in pp[f][p]]
        adv[p] = _mean([r["shipped"] - r["photos"] for r in rows])
    medians = [_median([v for p, v in adv.items() if (p in seen) == group and v is not None])
               for group in (True, False)]
    lines += ["", f"Median over photos of shipped - cv (mean of the five fixed-strength families per photo): "
              f"{_f(medians[0], True)} dB on its training photos, {_f(medians[1], True)} dB on its held-out ones."]
    lines += ["", "### Per fold", "",
              "Mean PSNR (dB) over the fold's 5 test photos; `shipped saw` = how many of them are in SAMPLE_TRAIN.", "",
              "| fold | test photos | shipped saw | model | " + " | ".join(fams) + " |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in fams) + " |"]
    for k in range(N_FOLDS):
        names = sorted({p for f in fams for p, r in pp[f].items() if r["fold"] == k})
        if not names:
            continue
        for i, model in enumerate(("noisy", *MODELS)):
            head = (f"{k} | {', '.join(n.rsplit('.', 1)[0] for n in names)} | {sum(n in seen for n in names)}"
                    if i == 0 else " | | ")
            vals = [_mean([pp[f][p].get(model) for p in names]) for f in fams]
            lines.append(f"| {head} | {model} | " + " | ".join(_f(v) for v in vals) + " |")
    lines += ["", "### Per photo (mean over the five fixed-strength families)", "",
              "| photo | fold | shipped trained on it | noisy | photos only | photos + leaves | shipped | "
              "shipped - photos only |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in sorted({p for f in fixed for p in pp[f]}):
        rows = [pp[f][p] for f in fixed if p in pp[f]]
        m = {k: _mean([r.get(k) for r in rows]) for k in ("noisy", *MODELS)}
        adv = None if m["shipped"] is None or m["photos"] is None else m["shipped"] - m["photos"]
        lines.append(f"| {p} | {rows[0]['fold']} | {'yes' if p in seen else 'no'} | {_f(m['noisy'])} | "
                     f"{_f(m['photos'])} | {_f(m['photos+leaves'])} | {_f(m['shipped'])} | {_f(adv, True)} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=None, help="folders, runs and results.json (default: a new temp dir)")
    p.add_argument("--subset", type=int, default=8000, help="training pairs per run (the same for every run)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (the same for every run)")
    p.add_argument("--eval-every", type=int, default=125, help="steps between validations (auto would validate "
                   "every minute: most of a short CPU run)")
    p.add_argument("--n-val", type=int, default=500, help="validation pairs of each run (its checkpoint choice)")
    p.add_argument("--parallel", type=int, default=2, help="subprocesses at a time, one torch thread each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tables", action="store_true", help="only print the tables of WORK/results.json")
    p.add_argument("--folds-only", action="store_true", help="only print the fold assignment")
    a = p.parse_args()
    fold_list = folds(photo_names())
    print(f"{len(photo_names())} photos of {sample_dir()}, {N_FOLDS} folds (round-robin over sorted names):")
    for k, test in enumerate(fold_list):
        train = image_files_of([n for f in fold_list for n in f if n not in test])
        n_hold = max(1, len(train) // 5)
        print(f"  fold {k}: test {', '.join(test)} (shipped file trained on {sum(n in SAMPLE_TRAIN for n in test)} "
              f"of them); images: holds out for validation {', '.join(train[:n_hold])}")
    if a.folds_only:
        return 0
    a.work = (a.work or Path(tempfile.mkdtemp(prefix="lpo-"))).resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    path = a.work / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"train": {}, "eval": {}}
    if not a.tables:
        budget = {"subset": a.subset, "epochs": a.epochs, "eval_every": a.eval_every, "n_val": a.n_val,
                  "threads": 1, "parallel": a.parallel, "seed": a.seed}
        if results.get("budget", budget) != budget:
            print(f"{path} was made with {results['budget']}, not {budget}: use another --work", file=sys.stderr)
            return 2
        results.update(budget=budget, specs=noise_specs())
        results.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        results.setdefault("loadavg_before", loadavg())

        def save():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1))
            os.replace(tmp, path)

        t0 = time.time()
        print(f"work folder {a.work}; started {results['started']}; load average {results['loadavg_before']}")
        experiment(a, results, save)
        results["loadavg_after"] = loadavg()
        results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results.setdefault("wall_s", 0)
        results["wall_s"] += round(time.time() - t0)
        save()
    b = results.get("budget", {})
    walls = ", ".join(f"{r['wall_s']:.0f} s" for r in results["train"].values())
    print(f"\nbudget per run: {b.get('subset')} pairs x {b.get('epochs')} epochs, validation every "
          f"{b.get('eval_every')} steps on {b.get('n_val')} pairs, 1 thread, {b.get('parallel')} at a "
          f"time; runs' wall time: {walls}")
    print(f"started {results.get('started')}, finished {results.get('finished')}, {results.get('wall_s')} s; "
          f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}\n")
    print(tables(results))
    return 0


def image_files_of(names: list[str]) -> list[str]:
    """The order ``images:DIR`` reads a folder in (``engine.data.image_files``), without making the folder."""
    with tempfile.TemporaryDirectory() as d:
        for n in names:
            (Path(d) / n).touch()
        return [f.name for f in image_files(Path(d))]


if __name__ == "__main__":
    sys.exit(main())
