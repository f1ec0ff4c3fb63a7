"""``n2n-tui serve``: the same app in a browser, through ``textual-serve``. Each browser tab runs its own
``n2n-tui`` process (the launcher) that talks to the page over a websocket: a tab is one more viewer, so it can start
runs (in runners) and attach to live ones, and closing it never stops a run.

Only its owner gets in. Loopback is not private on a shared machine (every user of the host reaches 127.0.0.1), so
every request needs a token, as Jupyter's pages do: a random one each start (or the first line of ``--token-file``,
or ``$N2N_SERVE_TOKEN``; never on the command line, where ``ps`` shows it to everyone), printed in the URL to open.
The first visit trades the URL's token for a cookie (HttpOnly, SameSite=Strict) and drops it from the address bar;
a request without either is answered 403 before anything is rendered or started, and a websocket must also come from
the page's own origin. Pages build their URLs from the address the browser used, so an SSH tunnel to
``localhost`` and an IPv6 host (``http://[::1]:8000``) work as they are.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import shlex
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from tui.errors import UsageError

COOKIE = "n2n_token"
TOKEN_ENV = "N2N_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """A host as it goes into a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def app_command(runs_dir: str) -> str:
    """What each tab runs: this Python, this n2n-tui, the same runs folder (absolute: the server may be started
    anywhere)."""
    return shlex.join([sys.executable, "-m", "tui.cli", "--runs-dir", str(Path(runs_dir).resolve())])


def read_token(token_file: str | None) -> str:
    """The token: the first line of ``token_file``, else $N2N_SERVE_TOKEN, else a new random one."""
    if token_file is not None:
        try:
            lines = Path(token_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--token-file {token_file}: {getattr(e, 'strerror', None) or e}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise UsageError(f"--token-file {token_file}: empty; put the token on its first line")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or secrets.token_urlsafe(24)


def token_server(command: str, host: str, port: int, token: str):
    """A textual-serve Server that answers only requests carrying ``token`` (see the module docstring)."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server

    def holds_token(request) -> bool:
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def same_origin(request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == request.host

    class TokenServer(Server):
        async def _make_app(self):
            app = await super()._make_app()
            app.middlewares.append(guard)
            return app

        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request):
            # the URLs the page uses, on the address the browser used (a tunnel's localhost, [::1]): the cookie
            # then goes with every one of them
            base = f"{request.scheme}://{request.host}"
            ws = "wss" if request.scheme == "https" else "ws"
            return {"font_size": _int(request.query.get("fontsize"), 16),
                    "app_websocket_url": f"{ws}://{request.host}{request.app.router['websocket'].url_for()}",
                    "config": {"static": {"url": f"{base}/static/"}}, "application": {"name": self.title}}

    @web.middleware
    async def guard(request, handler):
        if not holds_token(request) or (request.path == "/ws" and not same_origin(request)):
            raise web.HTTPForbidden(text="n2n-tui serve: open the URL with the token that the server printed when it "
                                         "started\n")
        if "token" in request.query and request.path == "/":   # trade the URL's token for a cookie
            rest = urlencode([(k, v) for k, v in request.query.items() if k != "token"])
            response = web.Response(status=302, headers={"Location": "/" + (f"?{rest}" if rest else "")})
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return response
        return await handler(request)

    return TokenServer(command, host=host, port=port, title="n2n-tui",
                       public_url=f"http://{url_host(host)}:{port}")


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def run(args) -> int:
    try:
        import textual_serve.server  # noqa: F401
    except ImportError:
        raise UsageError("n2n-tui serve needs textual-serve: pip install 'n2n-tui[serve]'") from None
    token = read_token(args.token_file)
    if not is_loopback(args.host):
        print(f"n2n-tui: warning: serving on {args.host}:{args.port}, beyond this machine, in plain HTTP: the token "
              "crosses the network unencrypted (an SSH tunnel to 127.0.0.1 is the safe way in)", file=sys.stderr)
    _check_port_free(args.host, args.port)
    url = f"http://{url_host(args.host)}:{args.port}/?token={token}"
    print(f"n2n-tui: serving the app (runs in {Path(args.runs_dir).resolve()}); open\n    {url}\nfrom another "
          f"machine: ssh -L {args.port}:localhost:{args.port} THIS-HOST, then open "
          f"http://localhost:{args.port}/?token={token}", file=sys.stderr, flush=True)
    token_server(app_command(args.runs_dir), args.host, args.port, token).serve()
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
