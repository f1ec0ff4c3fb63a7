"""``n2n-tui serve``: the same app in a browser, through ``textual-serve``. Each browser tab runs its own
``n2n-tui`` process (the launcher) that talks to the page over a websocket: a tab is one more viewer, so it can start
runs (in runners) and attach to live ones, and closing it never stops a run.

The page has no login: it binds to the loopback address unless ``--host`` says otherwise, and the way in from another
machine is an SSH tunnel (``ssh -L 8000:localhost:8000 HOST``).
"""
from __future__ import annotations

import ipaddress
import shlex
import sys
from pathlib import Path

from tui.errors import UsageError

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_command(runs_dir: str) -> str:
    """What each tab runs: this Python, this n2n-tui, the same runs folder (absolute: the server may be started
    anywhere)."""
    return shlex.join([sys.executable, "-m", "tui.cli", "--runs-dir", str(Path(runs_dir).resolve())])


def run(args) -> int:
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UsageError("n2n-tui serve needs textual-serve: pip install 'n2n-tui[serve]'") from None
    if not is_loopback(args.host):
        print(f"n2n-tui: warning: serving on {args.host}:{args.port}, beyond this machine; the page has no login, "
              "so anyone who can reach it can start and stop runs (an SSH tunnel to 127.0.0.1 is the safe way in)",
              file=sys.stderr)
    _check_port_free(args.host, args.port)
    print(f"n2n-tui: serving the app on http://{args.host}:{args.port} (runs in {Path(args.runs_dir).resolve()}); "
          f"from another machine: ssh -L {args.port}:localhost:{args.port} THIS-HOST, then open "
          f"http://localhost:{args.port}", file=sys.stderr, flush=True)
    Server(app_command(args.runs_dir), host=args.host, port=args.port, title="n2n-tui").serve()
    return 0


def _check_port_free(host: str, port: int) -> None:
    """A port already taken is a one-line error now, not a traceback from the web server later."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UsageError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
