"""``n2n-tui train``: start (or ``--resume``) a run: in a runner process watched by the dashboard (the default),
in the background (``--detach``), in the foreground (``--headless``, a runner too), or in the dashboard's own process
(``--in-process``). From arguments to a run: ``tui.run_args``."""
from __future__ import annotations

import sys

from engine.specs import check_source
from engine.states import CLEAN_END
from sessions import Store
from sessions.launch import RunEnded, spawn
from sessions.runner import serve
from tui.errors import UsageError
from tui.run_args import CONFIG_ARGS, config_from_args, make_trainer, start_from_args


def _ignored_options(args) -> list[str]:
    """Options given with --resume that a resumed run does not use (it keeps its recorded configuration)."""
    from tui.parser import build_parser

    defaults = vars(build_parser().parse_args(["train"]))
    return ["--" + k.replace("_", "-") for k in CONFIG_ARGS
            if k != "device" and getattr(args, k, None) != defaults.get(k)]


def check_modes(args) -> None:
    """``--json`` is a headless run's output, with or without ``--headless``; not with --detach or --in-process."""
    if args.json:
        if args.detach or args.in_process:
            other = "--detach" if args.detach else "--in-process"
            raise UsageError(f"--json is a headless run's output: not with {other}")
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
            handle, store = start_from_args(args)
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
