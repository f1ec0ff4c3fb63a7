"""``n2n-tui train``: start (or ``--resume``) a run: in a runner process watched by the dashboard (the default),
in the background (``--detach``), in the foreground (``--headless``, a runner too), or in the dashboard's own process
(``--in-process``).

``make_trainer(args)`` turns command-line arguments into a recorded, ready-to-run ``(Trainer, Store)`` in this
process; ``start_run(args)`` gives the dashboard and the launcher a run handle to watch.
"""
from __future__ import annotations

import sys

from engine.config import RunConfig
from engine.specs import check_source, default_spec
from sessions import Store
from sessions.control import ControlError
from sessions.runner import serve, spawn
from tui.commands.attach_cmd import attach_run
from tui.errors import UsageError
from tui.parser import threads_setting
from engine.errors import N2NError
from engine.states import CLEAN_END, ENDED

CONFIG_ARGS = ("engine", "data", "noise", "epochs", "batch_size", "lr", "subset", "n_val", "eval_every", "seed",
               "device", "loss", "schedule", "warmup", "decay_to", "step_every", "gamma")


def config_from_args(args) -> RunConfig:
    """A validated RunConfig from parsed ``train`` arguments (missing ones take RunConfig's defaults)."""
    values = {k: getattr(args, k) for k in CONFIG_ARGS if getattr(args, k, None) is not None}
    values.setdefault("data", default_spec())
    values["threads"] = threads_setting(args)
    return RunConfig(**values).validate()


def make_trainer(args, *, load: bool = True, sinks=()):
    """``sessions.launch.open_run`` from ``train`` arguments: ``args`` needs ``runs_dir`` and either ``resume`` (a
    run reference) or the RunConfig fields; any object with those attributes works, e.g. ``SimpleNamespace``."""
    from sessions.launch import open_run  # the trainer and torch: only runs in this process need them

    resume = getattr(args, "resume", None)
    config = None if resume is not None else config_from_args(args)
    return open_run(getattr(args, "runs_dir", None) or "runs", config, resume=resume,
                    device=getattr(args, "device", None), threads=getattr(args, "threads", None), load=load,
                    sinks=sinks)


def _ignored_options(args) -> list[str]:
    """Options given with --resume that a resumed run does not use (it keeps its recorded configuration)."""
    from tui.parser import build_parser

    defaults = vars(build_parser().parse_args(["train"]))
    return ["--" + k.replace("_", "-") for k in CONFIG_ARGS
            if k != "device" and getattr(args, k, None) != defaults.get(k)]


def start_run(args):
    """A run to watch, as ``(handle, store)``: started in a runner process and connected to (the default: it outlives
    the window), or built in this process with ``--in-process`` (it ends with the window)."""
    runs_dir = getattr(args, "runs_dir", None) or "runs"
    if getattr(args, "in_process", False):
        from sessions.launch import LocalRun

        trainer, store = make_trainer(args, load=False)
        return LocalRun(trainer, store), store
    resume = getattr(args, "resume", None)
    config = None
    if resume is None:
        config = config_from_args(args)
        check_source(config.data)
    started = spawn(runs_dir, config, resume=resume, device=getattr(args, "device", None),
                    threads=getattr(args, "threads", None))
    try:
        return attach_run(runs_dir, started["run"])
    except ControlError:
        # a runner can end before its viewer connects (its data would not load, and the machine is busy): say how
        # the run ended, as the dashboard would have
        with Store(runs_dir, create=False, readonly=True) as store:
            run = store.get_run(started["run"], metrics=False, events=False)
        if run["state"] not in ENDED:
            raise
        raise RunEnded(run) from None


class RunEnded(N2NError, ValueError):
    """The run ended before a viewer could attach to it; ``status`` is the exit status that says how (1: failed)."""

    def __init__(self, run: dict):
        how = run["state"] + (f": {run['message']}" if run.get("message") else "")
        super().__init__(f"run {run['id']} {how}")
        self.status = 0 if run["state"] in CLEAN_END else 1


def check_modes(args) -> None:
    """``--json`` is a headless run's output, with or without ``--headless``; not with --detach or --in-process."""
    if args.json:
        if args.detach or args.in_process:
            raise UsageError(f"--json is a headless run's output: not with --{'detach' if args.detach else 'in-process'}")
        args.headless = True


def run(args) -> int:
    check_modes(args)
    if args.resume is not None:
        ignored = _ignored_options(args)
        if ignored:
            print(f"n2n-tui: note: {', '.join(ignored)} ignored: a resumed run keeps its recorded configuration",
                  file=sys.stderr)
    if args.detach:
        return _detach(args)
    if not args.headless:
        from tui.app import require_terminal, run_dashboard

        if args.resume is None:  # bad options and missing data first: they are what the user needs to fix
            check_source(config_from_args(args).data)
        require_terminal()  # before anything is started
        try:
            handle, store = start_run(args)
        except RunEnded as e:
            print(f"n2n-tui: {e}", file=sys.stderr)
            return e.status
        return run_dashboard(handle, store, args)
    return _headless(args)


def _detach(args) -> int:
    config = None
    if args.resume is None:
        config = config_from_args(args)
        check_source(config.data)
    started = spawn(args.runs_dir, config, resume=args.resume, device=args.device, threads=args.threads)
    print(started["run"], flush=True)
    print(f"n2n-tui: run {started['run']} trains in the background (runner pid {started['pid']}); "
          f"watch it with: n2n-tui attach {started['run']}", file=sys.stderr)
    return 0


def _headless(args) -> int:
    """A runner in the foreground: it trains here, prints progress, and serves its control socket to viewers."""
    from engine.headless import run_headless

    trainer, store = make_trainer(args)
    server = serve(trainer, store)
    try:
        status = run_headless(trainer, json_lines=args.json)
    finally:
        server.close()
        store.close()
    if args.export_to is not None and trainer.best_psnr is not None and trainer.state in CLEAN_END:
        from sessions.export import export_run

        with Store(args.runs_dir) as s:
            r = export_run(s, trainer.run_id, args.export_to, dataset=trainer.dataset, force=args.force)
        msg = {"event": "export", "run": r["run"], "path": r["path"], "psnr": r["psnr"]}
        if args.json:
            import json

            print(json.dumps(msg), flush=True)
        else:
            print(f"exported {r['path']} ({r['psnr']:.2f} dB, verified by reloading)")
    return status
