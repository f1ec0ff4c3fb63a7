"""``n2n-tui train``: start (or ``--resume``) a run, in the dashboard or ``--headless``.

``make_trainer(args)`` is the one place that turns command-line arguments into a recorded, ready-to-run
``(Trainer, Store)``; the dashboard's launcher calls it too.
"""
from __future__ import annotations

import sys
from pathlib import Path

from engine.config import RunConfig
from engine.data import DataError, default_spec, load_data, parse_spec
from engine.trainer import Trainer
from sessions import Store
from tui.errors import UsageError

CONFIG_ARGS = ("engine", "data", "noise", "epochs", "batch_size", "lr", "subset", "n_val", "eval_every", "seed",
               "device", "loss")


def config_from_args(args) -> RunConfig:
    """A validated RunConfig from parsed ``train`` arguments (missing ones take RunConfig's defaults)."""
    values = {k: getattr(args, k) for k in CONFIG_ARGS if getattr(args, k, None) is not None}
    values.setdefault("data", default_spec())
    return RunConfig(**values).validate()


def check_data_exists(spec: str) -> None:
    """The cheap part of a data source's checks (its files and folders exist), for when loading happens later."""
    kind, arg = parse_spec(spec)
    if kind == "course":
        for name in ("train_data.pkl", "val_data.pkl"):
            if not (Path(arg) / name).is_file():
                raise DataError(f"{Path(arg) / name}: file not found")
    elif kind == "images" and not Path(arg).is_dir():
        raise DataError(f"{arg}: no such directory")


def _load_or_check(config: RunConfig, load: bool):
    """The run's data set now (``load``), or only a check that its files exist (the trainer loads it later)."""
    if load:
        return load_data(config.data, noise=config.noise, seed=config.seed, n_train=config.subset, n_val=config.n_val)
    check_data_exists(config.data)
    return None


def make_trainer(args, *, load: bool = True, sinks=()) -> tuple[Trainer, Store]:
    """Open the store, record the run (or take over ``args.resume``), and build its Trainer.

    ``args`` needs ``runs_dir`` and either ``resume`` (a run reference) or the RunConfig fields (``engine``, ``data``,
    ``noise``, ``epochs``, ``batch_size``, ``lr``, ``subset``, ``n_val``, ``eval_every``, ``seed``, ``device``); any
    object with those attributes works, e.g. ``SimpleNamespace``. With ``load=True`` the data is loaded here (errors
    surface before anything is recorded); with ``load=False`` the trainer loads it in its own thread (a data error
    then ends the run as ``failed``). The store's recorder is already attached; ``sinks`` are added after it.
    Raises ConfigError / DataError / StoreError / CheckpointError (all ValueError) with one-line messages.
    """
    store = Store(getattr(args, "runs_dir", None) or "runs")
    if getattr(args, "resume", None) is not None:  # "" is a (bad) reference, not "no resume"
        return _resume(args, store, load, sinks)
    config = config_from_args(args)
    dataset = _load_or_check(config, load)
    run_id = store.new_run(config)
    try:
        trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), dataset=dataset,
                          sinks=[store.recorder(run_id), *sinks])
    except Exception as e:
        store.set_state(run_id, "failed", str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    return trainer, store


def _resume(args, store: Store, load: bool, sinks) -> tuple[Trainer, Store]:
    run = store.get_run(args.resume, metrics=False, events=False)
    run_id = run["id"]
    if run["state"] == "finished":
        raise UsageError(f"run {run_id} has finished: nothing to resume")
    if run["state"] in ("running", "paused"):
        raise UsageError(f"run {run_id} is {run['state']} in another process (pid {run['pid']}); "
                         "stop it first, or follow it with n2n-tui show")
    config = RunConfig.from_dict(run["config"])
    if getattr(args, "device", None):
        config.device = args.device  # the one thing that may change: the machine it continues on
    config.validate()
    store.acquire(run_id)  # from here on this process owns the run
    try:
        dataset = _load_or_check(config, load)
        trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), dataset=dataset,
                          sinks=[store.recorder(run_id), *sinks], resume_from=store.run_dir(run_id))
    except BaseException:
        store.release(run_id)
        raise
    store.begin_resume(run_id, trainer.step, trainer.resume_note)
    return trainer, store


def _ignored_options(args) -> list[str]:
    """Options given with --resume that a resumed run does not use (it keeps its recorded configuration)."""
    from tui.parser import build_parser

    defaults = vars(build_parser().parse_args(["train"]))
    return ["--" + k.replace("_", "-") for k in CONFIG_ARGS
            if k != "device" and getattr(args, k, None) != defaults.get(k)]


def run(args) -> int:
    if args.json:
        args.headless = True  # --json is a headless format
    if args.resume is not None:
        ignored = _ignored_options(args)
        if ignored:
            print(f"n2n-tui: note: {', '.join(ignored)} ignored: a resumed run keeps its recorded configuration",
                  file=sys.stderr)
    if not args.headless:
        from tui.app import require_terminal, run_dashboard

        if args.resume is None:  # bad options and missing data first: they are what the user needs to fix
            check_data_exists(config_from_args(args).data)
        require_terminal()  # before anything is recorded
        trainer, store = make_trainer(args, load=False)
        return run_dashboard(trainer, store, args)

    from engine.headless import run_headless

    trainer, store = make_trainer(args)
    try:
        status = run_headless(trainer, json_lines=args.json)
    finally:
        store.close()
    if args.export_to is not None and trainer.best_psnr is not None and trainer.state in ("finished", "stopped"):
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

