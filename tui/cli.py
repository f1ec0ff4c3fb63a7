"""The ``n2n-tui`` command line: dispatch to the commands, and one clean line plus exit status 2 for every bad input
(the parser itself is ``tui.parser``)."""
from __future__ import annotations

import os
import sys

from engine.errors import N2NError, first_line
from tui.parser import EXIT_BAD_INPUT, build_parser


def _dispatch(args) -> int:
    if args.command is None:
        from tui.commands import app_cmd
        return app_cmd.run(args)
    if args.command == "data":
        from tui.commands import data_cmd
        return data_cmd.run(args)
    if args.command == "eval":
        from tui.commands import eval_cmd
        return eval_cmd.run(args)
    if args.command == "denoise":
        from tui.commands import denoise_cmd
        return denoise_cmd.run(args)
    if args.command == "report":
        from tui.commands import report_cmd
        return report_cmd.run(args)
    if args.command == "train":
        from tui.commands import train_cmd
        return train_cmd.run(args)
    if args.command in ("sweep", "sweeps"):
        from tui.commands import sweep_cmd
        return getattr(sweep_cmd, args.command)(args)
    if args.command == "serve":
        from tui.commands import serve_cmd
        return serve_cmd.run(args)
    if args.command in ("attach", "ctl"):
        from tui.commands import attach_cmd
        return getattr(attach_cmd, args.command)(args)
    from tui.commands import runs_cmd  # runs, show, export, tag
    return getattr(runs_cmd, args.command)(args)


EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE, as `seq 1e9 | head -1` is


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args) or 0
    except BrokenPipeError:
        return _broken_pipe()
    except (N2NError, ValueError, OSError) as e:  # ours (N2NError); a library's or the system's, said as plainly
        msg = first_line(e)
        print(f"n2n-tui: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _broken_pipe() -> int:
    """The reader of our output went away (``| head``): leave quietly, like other Unix tools. Python would complain
    once more when it flushes stdout at exit, so stdout is pointed at /dev/null first."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
