"""The runner's side of the control socket: ``ControlServer`` serves ``<run folder>/control.sock`` (mode 0600) and
asks the kernel who connected (``SO_PEERCRED``): a peer of another user is told so and dropped, whatever the file's
mode says. The wire format is in ``sessions.protocol``; the viewers' side is ``sessions.remote``.

The server never lets a viewer slow the run down. The trainer's sink (``publish``) only appends to a list; one
broadcaster thread turns what piled up into lines every ``FLUSH_SECONDS`` (consecutive steps become one line) and
hands them to each viewer's bounded queue; each viewer has its own writer thread. A viewer whose queue passes
``QUEUE_BYTES`` (it stopped reading, or reads too slowly) loses what was queued and gets a fresh ``hello`` marked
``resync``, so it reloads the history from the store; one that vanished is forgotten when its socket fails.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections import deque

from engine.errors import described, first_line
from engine.events import Event, StepEvent

from .protocol import (
    MAX_LINE,
    PROTOCOL,
    ProtocolError,
    encode_event,
    encode_steps,
    line,
    parse_command,
    socket_path,
    unix_address,
)

FLUSH_SECONDS = 0.1          # the broadcaster's cadence: step events reach viewers in batches this often
QUEUE_BYTES = 4 << 20        # per viewer: beyond this it is resynced
ACCEPT_POLL = 0.5


def peer_uid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", creds)[1]


class _Viewer:
    """One connected viewer: a bounded queue of lines and the thread that writes them."""

    def __init__(self, conn: socket.socket, server: "ControlServer"):
        self.conn, self.server = conn, server
        self.cv = threading.Condition()
        self.queue: deque[tuple[bytes, bool]] = deque()  # (line, is_reply)
        self.size = 0
        self.alive = True
        self.resyncs = 0

    def push(self, data: bytes, reply: bool = False) -> None:
        with self.cv:
            if not self.alive:
                return
            if not reply and self.size and self.size + len(data) > QUEUE_BYTES:  # unsent lines piled up
                # fallen behind: drop what it has not read (replies excepted), start it afresh from the store
                kept = [(d, r) for d, r in self.queue if r]
                self.queue = deque(kept)
                self.size = sum(len(d) for d, _ in kept)
                self.resyncs += 1
                data = line(self.server.hello(resync=True))
            self.queue.append((data, reply))
            self.size += len(data)
            self.cv.notify()

    def write_loop(self) -> None:
        try:
            while True:
                with self.cv:
                    while self.alive and not self.queue:
                        self.cv.wait()
                    if not self.alive and not self.queue:
                        return
                    chunks = list(self.queue)
                    self.queue.clear()
                    self.size = 0
                self.conn.sendall(b"".join(d for d, _ in chunks))
        except OSError:
            pass
        finally:
            self.close()

    def read_loop(self) -> None:
        f = self.conn.makefile("rb")
        try:
            while self.alive:
                raw = f.readline(MAX_LINE + 1)
                if not raw:
                    return
                if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the oversized line
                        raw = f.readline(MAX_LINE)
                    self.push(line({"reply": None, "ok": False, "error": f"message over {MAX_LINE} bytes"}), True)
                    continue
                if not raw.strip():
                    continue
                self.push(line(self.server.answer(raw)), True)
        except OSError:
            pass
        finally:
            f.close()
            self.close()

    def close(self, flush: bool = False) -> None:
        with self.cv:
            if not self.alive:
                return
            self.alive = False
            self.cv.notify_all()
        if flush:  # let the writer send what is queued (the final state) before the socket goes
            deadline = time.monotonic() + 2.0
            while self.queue and time.monotonic() < deadline:
                time.sleep(0.01)
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.server._forget(self)


class ControlServer:
    """Serves one run's control socket. ``handler`` answers: ``status() -> dict`` (the hello) and
    ``command(msg) -> dict`` (raises ValueError with a one-line message to refuse)."""

    def __init__(self, run_dir: str | os.PathLike, handler):
        self.path = socket_path(run_dir)
        self.handler = handler
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[Event] = []
        self._viewers: list[_Viewer] = []
        self._closed = False
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.last_eval = None

    # ---------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> "ControlServer":
        try:
            self.path.unlink()  # a stale socket of a dead runner: this process owns the run now
        except FileNotFoundError:
            pass
        address, fd = unix_address(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: never a moment when others may connect
        try:
            sock.bind(address)
        finally:
            os.umask(old)
            if fd is not None:
                os.close(fd)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        sock.settimeout(ACCEPT_POLL)
        self._sock = sock
        for target, name in ((self._accept_loop, "accept"), (self._broadcast_loop, "broadcast")):
            t = threading.Thread(target=target, name=f"control-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        """Send what is pending (the final state), then close every connection and remove the socket."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        for t in self._threads:
            t.join(5)
        for v in list(self._viewers):
            v.close(flush=True)
        if self._sock is not None:
            self._sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    # ------------------------------------------------------------------------------------------- events out
    def publish(self, event: Event) -> None:
        """The trainer's sink: O(1), never blocks on a viewer."""
        with self._lock:
            if event.kind == "eval":
                self.last_eval = event
            if not self._viewers:
                return
            self._pending.append(event)
            if event.kind != "step":
                self._wake.notify()  # state changes and evaluations go out at once

    def hello(self, resync: bool = False) -> dict:
        status = dict(self.handler.status())
        status.update(event="hello", protocol=PROTOCOL, resync=resync,
                      last_eval=encode_event(self.last_eval) if self.last_eval is not None else None)
        return status

    def _broadcast_loop(self) -> None:
        while True:
            with self._lock:
                if not self._closed:
                    self._wake.wait(FLUSH_SECONDS)
                events, self._pending = self._pending, []
                viewers = list(self._viewers)
                closed = self._closed
            if events and viewers:
                data = self._encode(events)
                for v in viewers:
                    v.push(data)
            if closed:
                return

    @staticmethod
    def _encode(events: list[Event]) -> bytes:
        out, steps = [], []
        for e in events:
            if isinstance(e, StepEvent):
                steps.append(e)
                continue
            if steps:
                out.append(line(encode_steps(steps)))
                steps = []
            out.append(line(encode_event(e)))
        if steps:
            out.append(line(encode_steps(steps)))
        return b"".join(out)

    # ------------------------------------------------------------------------------------------- viewers in
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            uid = peer_uid(conn)
            if uid != os.geteuid():
                try:
                    conn.sendall(line({"event": "refused", "error": f"connections from uid {uid} are refused: "
                                                                   "this run belongs to another user"}))
                except OSError:
                    pass
                conn.close()
                continue
            v = _Viewer(conn, self)
            with self._lock:  # the hello goes first: no broadcast can slip in before it
                v.push(line(self.hello()))
                self._viewers.append(v)
            for target in (v.write_loop, v.read_loop):
                threading.Thread(target=target, name="control-viewer", daemon=True).start()

    def _forget(self, v: _Viewer) -> None:
        with self._lock:
            if v in self._viewers:
                self._viewers.remove(v)

    def answer(self, raw: bytes) -> dict:
        msg_id = None
        try:
            msg = parse_command(raw)
            msg_id = msg.get("id")
            result = self.handler.command(msg)
        except ProtocolError as e:
            return {"reply": e.msg_id, "ok": False, "error": str(e)}
        except ValueError as e:
            reply = {"reply": msg_id, "ok": False, "error": first_line(e)}
            for k in ("theirs", "ours"):  # a save that would replace better weights: the viewer may ask and force
                if hasattr(e, k):
                    reply["code"], reply[k] = "better", getattr(e, k)
            return reply
        except OSError as e:  # a save to a place that cannot take the file: the reason, as the command line says it
            from engine.fileio import write_error

            return {"reply": msg_id, "ok": False, "error": first_line(write_error(e, e.filename or "the target"))}
        except Exception as e:  # a bug in a command must not take the runner down
            return {"reply": msg_id, "ok": False, "error": described(e)}
        return {"reply": msg_id, "ok": True, "result": result}
