"""``n2n-tui serve`` answers only its owner: every HTTP request and websocket needs the token printed at start (then a
cookie); without it, 403 and no app process started. A real server process, real HTTP, a second Unix user when the
test runs as root. (The browser itself, with the token, is tests/test_serve.py.)"""
from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("textual_serve", reason="textual-serve is not installed (pip install 'n2n-tui[serve]')")

WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}


def free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def request(port: int, path: str, headers: dict | None = None, host: str = "127.0.0.1"):
    c = http.client.HTTPConnection(host, port, timeout=20)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


@pytest.fixture
def served(tmp_path):
    """A running ``n2n-tui serve``: (port, token it printed, its process)."""
    port = free_port()
    env = dict(os.environ)
    env.pop("N2N_SERVE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--runs-dir",
                             str(tmp_path / "runs")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        printed = ""
        deadline = time.time() + 60
        while "?token=" not in printed and time.time() < deadline:
            printed += proc.stderr.readline()
        token = re.search(r"http://127\.0\.0\.1:\d+/\?token=(\S+)", printed).group(1)
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield port, token, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def apps_started(proc) -> int:
    return len(psutil.Process(proc.pid).children(recursive=True))


def test_nothing_is_served_or_started_without_the_token(served):
    port, token, proc = served
    assert len(token) >= 24                                  # a random token, made for this start
    for path, headers in (("/", None), ("/static/js/textual.js", None), ("/ws", WS_HEADERS),
                          ("/?token=" + token[:-1] + "x", None), ("/ws?token=nope", WS_HEADERS)):
        status, _, body = request(port, path, headers)
        assert status == 403, (path, status)
        assert b"token" in body and b"<html" not in body.lower()
    time.sleep(1)
    assert apps_started(proc) == 0


def test_the_token_opens_the_page_then_a_cookie_keeps_it_open(served):
    port, token, proc = served
    status, headers, _ = request(port, f"/?token={token}&fontsize=14")
    assert status == 302 and headers["Location"] == "/?fontsize=14"     # the token leaves the address bar
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    status, _, page = request(port, "/?fontsize=14", jar)
    assert status == 200 and b"ws://127.0.0.1:" in page                 # the websocket on the address used
    assert request(port, "/static/js/textual.js", jar)[0] == 200
    # a websocket from another site's page, even with the cookie (a browser would send it along): refused
    assert request(port, "/ws", {**WS_HEADERS, **jar, "Origin": "http://evil.example"})[0] == 403
    assert apps_started(proc) == 0
    status, _, _ = request(port, "/ws", {**WS_HEADERS, **jar, "Origin": f"http://127.0.0.1:{port}"})
    assert status == 101                                                # the owner's page: the app starts
    deadline = time.time() + 30
    while apps_started(proc) == 0 and time.time() < deadline:
        time.sleep(0.1)
    assert apps_started(proc) >= 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second Unix user (setuid to nobody)")
def test_another_unix_user_can_neither_read_the_token_nor_get_in(tmp_path):
    home = Path(tempfile.mkdtemp(dir="/tmp"))   # a folder the other user may pass through, as a home folder
    os.chmod(home, 0o711)
    token_file = home / "token"
    token_file.write_text("the-owners-token\n")
    os.chmod(token_file, 0o600)                 # only its mode keeps the other user out
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--token-file",
                             str(token_file), "--runs-dir", str(tmp_path / "runs")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        printed = proc.stderr.readline() + proc.stderr.readline()
        assert "?token=the-owners-token" in printed
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        intruder = f"""
import http.client, sys
try:
    open({str(token_file)!r}).read()
    print("read the token")
except PermissionError:
    print("token unreadable")
for path in ("/", "/ws"):
    c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=20)
    c.request("GET", path, headers={{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}} if path == "/ws" else {{}})
    print(path, c.getresponse().status)
"""
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable   # one the other user may run
        r = subprocess.run([python, "-c", intruder], user=65534, group=65534, capture_output=True, text=True,
                           timeout=60, cwd="/")
        assert r.stdout.split("\n")[:3] == ["token unreadable", "/ 403", "/ws 403"], r.stdout + r.stderr
        assert apps_started(proc) == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)


def test_an_ipv6_host_prints_a_url_that_works(tmp_path):
    try:
        port = free_port(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    env = dict(os.environ, N2N_SERVE_TOKEN="six")
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", "--host", "::1", "--port", str(port),
                             "--runs-dir", str(tmp_path / "runs")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        printed = proc.stderr.readline() + proc.stderr.readline()
        assert f"http://[::1]:{port}/?token=six" in printed
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket(socket.AF_INET6) as s:
                if s.connect_ex(("::1", port)) == 0:
                    break
            time.sleep(0.1)
        status, headers, _ = request(port, "/?token=six", host="::1")
        assert status == 302
        status, _, page = request(port, "/", {"Cookie": headers["Set-Cookie"].split(";")[0]}, host="::1")
        assert status == 200 and f"ws://[::1]:{port}/ws".encode() in page
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_a_token_file_that_cannot_be_read_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tui.cli", "serve", "--token-file", str(tmp_path / "missing"),
                        "--port", str(free_port()), "--runs-dir", str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--token-file" in r.stderr
