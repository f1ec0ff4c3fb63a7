"""``n2n-tui`` with no subcommand: the launcher (pick engine, data, noise, hyper-parameters), then the dashboard."""
from __future__ import annotations


def run(args) -> int:
    from sessions import Store
    from tui.app import require_terminal, run_launcher
    from tui.parser import threads_setting

    threads_setting(args)  # a bad $N2N_THREADS: one line now, not a launcher that cannot start a run
    require_terminal()
    store = Store(args.runs_dir)
    return run_launcher(args, store=store)
