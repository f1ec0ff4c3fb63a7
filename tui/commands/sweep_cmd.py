"""``n2n-tui sweep SPEC.toml``: search hyper-parameters with Ray Tune, watched in the sweep view (or ``--headless``,
``--json`` for scripts); ``n2n-tui sweep --resume SWEEP`` continues one; ``n2n-tui sweeps`` lists them."""
from __future__ import annotations

import json
import time

from engine.states import CLEAN_END, PENDING_OR_RUNNING
from sessions import Store
from sessions.ray_cluster import check_resources, connect_ray, ray_session
from sessions.sweep import SweepDriver
from sessions.sweep_spec import SpecError, SweepSpec, load_spec
from tui.errors import UsageError


def _driver(args) -> tuple[SweepDriver, Store]:
    if (args.spec is None) == (args.resume is None):
        raise UsageError("give a sweep spec (SPEC.toml) or --resume SWEEP, not both and not neither")
    store = Store(args.runs_dir)
    try:
        if args.resume is not None:
            row = store.get_sweep(args.resume)
            if row["state"] in PENDING_OR_RUNNING:
                raise UsageError(f"sweep {row['id']} is {row['state']} in another process (pid {row['pid']})")
            if row["state"] == "finished":
                raise UsageError(f"sweep {row['id']} has finished: nothing to resume")
            return SweepDriver(store, SweepSpec.from_dict(row["spec"]), sweep_id=row["id"], resume=True), store
        return SweepDriver(store, load_spec(args.spec)), store
    except BaseException:
        store.close()
        raise


def sweep(args) -> int:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        from sessions.ray_cluster import INSTALL

        raise UsageError(INSTALL)
    driver, store = _driver(args)  # the spec is checked before Ray starts
    if not args.headless and not args.json:
        from tui.app import require_terminal

        require_terminal()
    import ray

    try:
        check_resources(driver.spec, args.address)  # local: before Ray starts
        connect_ray(args.address)
        check_resources(driver.spec, args.address, connected=True)  # a cluster: what it says it has
        if args.headless or args.json:
            return _headless(driver, args.json)
        # Tune's console module reads sys.stdout.encoding when first imported; inside the app, stdout is Textual's
        # print capture, which has none: import it now, while stdout is still the terminal
        import ray.tune.experimental.output  # noqa: F401

        from tui.app import run_sweep_view

        return run_sweep_view(driver, store, args)
    except SpecError as e:
        raise UsageError(str(e)) from None
    finally:
        if ray.is_initialized():
            ray.shutdown()  # embedded Ray's processes go with us
        store.close()


def _headless(driver: SweepDriver, as_json: bool) -> int:
    from ..widgets.population import exploit_entry, trial_set_entry  # the sweep view's words for them

    def show(event: dict) -> None:
        if as_json:
            print(json.dumps(event), flush=True)
            return
        kind = event["event"]
        if kind == "trial_start":
            print(f"trial {event['trial']}  run {event['run']}  {json.dumps(event['params'])}", flush=True)
        elif kind == "trial_result" and event.get("psnr") is not None:
            print(f"  {event['trial']}  step {event['step']:>6}/{event['total_steps']}  PSNR {event['psnr']:6.2f} dB"
                  f"  best {event['best_psnr']:6.2f}", flush=True)
        elif kind == "trial_end":
            tag = " (early-stopped)" if event["early_stopped"] else ""
            best = f"  best {event['best_psnr']:.2f} dB" if event["best_psnr"] is not None else ""
            print(f"trial {event['trial']} {event['state']}{tag}{best}", flush=True)
        elif kind == "exploit":
            print(f"trial {exploit_entry(event)} (at its step {event['step']})", flush=True)
        elif kind == "trial_set":
            print(f"trial {trial_set_entry(event)}", flush=True)
        elif kind == "sweep_end":
            best = event["best"]
            line = f"sweep {event['sweep']} {event['state']}"
            if best:
                line += (f"; best {best['best_psnr']:.2f} dB: trial {best['trial']} run {best['run']} "
                         f"{json.dumps(best['params'])} (export it: n2n-tui export {best['run']})")
            elif event["state"] in CLEAN_END:
                line += "; no trial improved on its untrained start: nothing to export"
            print(line, flush=True)

    driver.listeners.append(show)
    if as_json:
        print(json.dumps({"event": "sweep_start", "sweep": driver.sweep_id, "time": time.time(),
                          "spec": driver.spec.to_dict(), "ray_session": ray_session()}), flush=True)
    else:
        print(f"sweep {driver.sweep_id}: {driver.spec.trial_count()} trials, {driver.spec.concurrency} at a time, "
              f"scheduler {driver.spec.scheduler}", flush=True)
    try:
        summary = driver.run()
    except KeyboardInterrupt:
        return 130
    # Ctrl-C: Tune winds the trials down and returns, the sweep reads stopped: 130, as train says it
    return {"finished": 0, "stopped": 130}.get(summary["state"], 1)


def sweeps(args) -> int:
    with Store(args.runs_dir, create=False, readonly=True) as store:
        rows = store.list_sweeps()
        tags = {r["id"]: r.get("tag") for r in store.list_runs()} if rows and not args.json else {}
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no sweeps in {args.runs_dir} yet: start one with n2n-tui sweep SPEC.toml")
        return 0
    print(f"{'SWEEP':<28} {'STATE':<9} {'TRIALS':>6} {'BEST PSNR':>9}  BEST RUN")
    for r in rows:
        best = f"{r['best_psnr']:.2f}" if r["best_psnr"] is not None else "-"
        tag = f"  \u00ab{tags[r['best_run']]}\u00bb" if tags.get(r["best_run"]) else ""  # as runs shows it
        print(f"{r['id']:<28} {r['state']:<9} {len(r['trials']):>6} {best:>9}  {r['best_run'] or '-'}{tag}")
    return 0
