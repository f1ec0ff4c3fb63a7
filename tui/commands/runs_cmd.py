"""``n2n-tui runs``, ``n2n-tui show RUN`` and ``n2n-tui export RUN``: past and running sessions."""
from __future__ import annotations

import json
import math
import sys
import time

from engine.live_control import setting_text
from engine.specs import CROP
from engine.states import LIVE
from sessions import Store
from sessions.remote import live_elsewhere
from sessions.store import StoreError, settings_changes


def _open(args) -> Store:
    return Store(args.runs_dir, create=False, readonly=True)  # looking never creates or writes anything


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _duration(run: dict) -> str:
    """How long the run has trained (live time, summed over its resumptions; not the time it sat stopped)."""
    s = run["active"] or 0.0
    if run["state"] in LIVE:
        s += max(0.0, time.time() - run["updated"])  # since the recorder last wrote
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _num(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def runs(args) -> int:
    store = _open(args)
    rows = store.list_runs()
    if args.json:
        print(json.dumps(_json_safe(rows)))
        return 0
    lost = live_elsewhere(store.root, {r["id"] for r in rows})
    if not rows and not lost:
        print(f"no runs in {store.root} yet: start one with n2n-tui train")
        return 0
    head = f"{'ID':<20} {'ENG':>3} {'STATE':<9} {'STEP':>13} {'EP':>3} {'LR':>8} {'BEST PSNR':>9} " \
           f"{'STARTED':<19} {'TIME':>7}  DATA"
    print(head)
    for r in rows:
        cfg = r["config"]
        step = f"{r['step']}/{r['total_steps']}" if r["total_steps"] else str(r["step"])
        data = cfg.get("data", "")
        if cfg.get("noise") and not str(data).startswith("course:"):
            data += f" {cfg['noise']}"
        if cfg.get("fresh"):
            data += " fresh"
        if cfg.get("float_targets"):
            data += " float-targets"
        if cfg.get("crop", CROP) != CROP:
            data += f" crop {cfg['crop']}"
        tag = f"  \u00ab{r['tag']}\u00bb" if r.get("tag") else ""
        print(f"{r['id']:<20} {r['engine']:>3} {r['state']:<9} {step:>13} {r['epoch']:>3} {_num(r['lr'], '.2g'):>8} "
              f"{_num(r['best_psnr'], '.2f'):>9} {_when(r['started']):<19} {_duration(r):>7}  {data}{tag}")
    for r in lost:
        print(f"{r['id']:<20} {r['engine'] or '?':>3} {r['state']:<9} {r['step']:>13}  (its runner answers, but the "
              f"store has lost it: n2n-tui ctl {r['id']} status)")
    return 0


def show(args) -> int:
    store = _open(args)
    run = store.get_run(args.run)
    if args.json:
        print(json.dumps(_json_safe(run)))
        return 0
    cfg = run["config"]
    total = f"/{run['total_steps']}" if run["total_steps"] else ""
    print(f"run {run['id']}  engine {run['engine']}  {run['state']}  step {run['step']}{total}  epoch {run['epoch']}"
          f"  lr {_num(run['lr'], '.3g')}")
    if run.get("tag"):
        print(f"tag     {run['tag']}")
    if run["message"]:
        print(f"  {run['message']}")
    print(f"started {_when(run['started'])}  ended {_when(run['ended'])}  ({_duration(run)})  folder {run['run_dir']}")
    if run["best_psnr"] is not None:
        print(f"best PSNR {run['best_psnr']:.2f} dB at step {run['best_step']}")
    print("config  " + "  ".join(f"{k}={v}" for k, v in cfg.items()))

    metrics = run["metrics"]
    losses = [m for m in metrics if m["loss"] is not None]
    evals = [m for m in metrics if m["psnr"] is not None]
    if losses:
        print(f"loss    {len(losses)} steps: {losses[0]['loss']:.4f} (step {losses[0]['step']}) -> "
              f"{losses[-1]['loss']:.4f} (step {losses[-1]['step']}), lowest {min(m['loss'] for m in losses):.4f}")
    if evals:
        print(f"PSNR    {len(evals)} evaluations:")
        shown = evals if len(evals) <= 12 else evals[:2] + evals[-10:]
        for i, m in enumerate(shown):
            if len(evals) > 12 and i == 2:
                print(f"          ... {len(evals) - 12} more")
            print(f"          step {m['step']:>7}  epoch {m['epoch'] or 0:>3}  {m['psnr']:6.2f} dB")
    changes = settings_changes(run.get("settings") or [])
    if changes:
        print("settings " + "  ".join(
            f"{name}: " + " -> ".join(f"{setting_text(name, v)} (step {s})" for s, v in values)
            for name, values in changes.items()))
    if run["events"]:
        print(f"events  {len(run['events'])}:")
        for e in run["events"]:
            detail = e["detail"].strip().splitlines()[-1] if e["detail"].strip() else ""
            step = f"step {e['step']}" if e["step"] is not None else ""
            print(f"          {time.strftime('%H:%M:%S', time.localtime(e['time']))}  {e['kind']:<8} {step:<11}"
                  f"{detail}")
    return 0


def export(args) -> int:
    from sessions.export import export_run

    why_unwritable = None
    try:
        store = Store(args.runs_dir, create=False)  # it records the export
    except StoreError as e:
        if not ("no space left" in str(e) or "read-only" in str(e)):
            raise
        # a full or read-only runs folder: the run can still be read and its weights exported (not noted)
        why_unwritable = str(e)
        store = Store(args.runs_dir, create=False, readonly=True)
    try:
        r = export_run(store, args.run, args.to, force=args.force)
    finally:
        store.close()
    if r.get("unrecorded") and why_unwritable:
        r["unrecorded"] = why_unwritable
    replaced = "" if r["replaced_psnr"] is None else f"; it replaced weights that scored {r['replaced_psnr']:.2f} dB"
    print(f"wrote {r['path']}: run {r['run']} (engine {r['engine']}, step {r['step']}), "
          f"{r['psnr']:.2f} dB on {r['n_val']} validation images of {r['data']}, verified by reloading{replaced}")
    if r.get("unrecorded"):
        print(f"n2n-tui: note: the export is done, but the store could not note it ({r['unrecorded']})",
              file=sys.stderr)
    return 0


def tag(args) -> int:
    with Store(args.runs_dir, create=False) as store:
        run_id = store.resolve(args.run)
        store.set_tag(run_id, args.text.strip())
    print(f"run {run_id}: tag {args.text.strip()!r}" if args.text.strip() else f"run {run_id}: tag cleared")
    return 0
