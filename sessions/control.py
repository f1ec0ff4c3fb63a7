"""The control socket of a live run: ``ControlServer`` in the runner, ``RemoteRun`` in every viewer.

The socket is ``<run folder>/control.sock``, mode 0600, and the server asks the kernel who connected
(``SO_PEERCRED``): a peer of another user is told so and dropped, whatever the file's mode says. The wire format is
in ``sessions.protocol``.

The server never lets a viewer slow the run down. The trainer's sink (``publish``) only appends to a list; one
broadcaster thread turns what piled up into lines every ``FLUSH_SECONDS`` (consecutive steps become one line) and
hands them to each viewer's bounded queue; each viewer has its own writer thread. A viewer whose queue passes
``QUEUE_BYTES`` (it stopped reading, or reads too slowly) loses what was queued and gets a fresh ``hello`` marked
``resync``, so it reloads the history from the store; one that vanished is forgotten when its socket fails.

``RemoteRun`` looks like a ``Trainer`` to the dashboard (``state``, ``step``, ``lr``, ``pause()``, ``set_lr()``,
``add_sink()`` ...): the same event objects arrive through its sinks, from its reader thread.
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from engine.config import RunConfig
from engine.events import Event, StepEvent
from engine.threads import threads_value
from engine.errors import N2NError, described, first_line
from engine.states import ACTIVE

from .protocol import (MAX_LINE, PROTOCOL, SOCKET_NAME, ProtocolError, decode_events, encode_event, encode_steps,
                       line, parse_command)

FLUSH_SECONDS = 0.1          # the broadcaster's cadence: step events reach viewers in batches this often
QUEUE_BYTES = 4 << 20        # per viewer: beyond this it is resynced
ACCEPT_POLL = 0.5
_UNIX_PATH_MAX = 100         # sun_path holds 108 bytes; longer paths go through /proc/self/fd


class ControlError(N2NError, ValueError):
    """A command the run refused, or a run that cannot be reached; the message is one line."""


def socket_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / SOCKET_NAME


def _short_address(path: Path) -> tuple[str, int | None]:
    """An address for ``path`` that fits a Unix socket: the path itself, or ``/proc/self/fd/N/<name>`` through an
    open descriptor of its folder (returned, to be closed by the caller) when the path is too long."""
    if len(os.fsencode(path)) <= _UNIX_PATH_MAX:
        return str(path), None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def peer_uid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", creds)[1]


# ------------------------------------------------------------------------------------------------------ server

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
        address, fd = _short_address(self.path)
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


# ------------------------------------------------------------------------------------------------------ client

def connect(run_dir: str | os.PathLike, timeout: float = 5.0) -> socket.socket:
    """A connection to the run's control socket; ControlError if nobody is there."""
    path = socket_path(run_dir)
    if not path.exists():
        raise ControlError(f"run {Path(run_dir).name} is not live (no control socket in {Path(run_dir)})")
    address, fd = _short_address(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError as e:
        sock.close()
        raise ControlError(f"run {Path(run_dir).name} is not live ({e.strerror or e})") from None
    finally:
        if fd is not None:
            os.close(fd)
    return sock


@dataclass(frozen=True)
class ResyncEvent(Event):
    """The runner dropped events this viewer had not read: reload the history from the store."""
    step: int = 0
    kind = "resync"


class RemoteRun:
    """A live run seen through its control socket, with the Trainer's face: attributes mirrored from the runner's
    hello and events, control methods sent as commands (each waits for its answer)."""

    def __init__(self, run_dir: str | os.PathLike, *, timeout: float = 5.0):
        self.run_dir = Path(run_dir)
        self._sock = connect(self.run_dir, timeout)
        self._file = self._sock.makefile("rb")
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, list] = {}
        self._sinks: list = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dataset = None          # the runner holds the data; exports happen there
        self.remote = True
        try:
            hello = self._read_json()
        except OSError as e:
            self.close()
            raise ControlError(f"run {self.run_dir.name} is not live ({e.strerror or e})") from None
        if hello is None or hello.get("event") != "hello":
            error = (hello or {}).get("error") or "the runner did not say hello"
            self.close()
            raise ControlError(error)
        self._sock.settimeout(None)
        self._apply_hello(hello)

    # ------------------------------------------------------------------------------------------------ reading
    def _read_json(self) -> dict | None:
        raw = self._file.readline()
        if not raw:
            return None
        try:
            d = json.loads(raw)
        except ValueError:
            raise ControlError("the runner sent something that is not JSON") from None
        return d if isinstance(d, dict) else None

    def _apply_hello(self, h: dict) -> None:
        self.run_id = h.get("run", "")
        self.config = RunConfig.from_dict(h["config"]) if isinstance(h.get("config"), dict) else RunConfig()
        for k in ("device", "state", "message", "step", "epoch", "total_steps", "lr", "best_psnr", "best_step",
                  "img_per_s", "psnr_noisy", "pid", "batch_size"):
            setattr(self, k, h.get(k))
        self.step, self.epoch, self.total_steps = self.step or 0, self.epoch or 0, self.total_steps or 0
        last = h.get("last_eval")
        self.last_eval = decode_events(last)[0] if isinstance(last, dict) else None
        self._hyper = h.get("hyperparameters") or {}

    def add_sink(self, sink) -> None:
        self._sinks = self._sinks + [sink]

    def start(self) -> threading.Thread:
        """Follow the run: events go to the sinks from a reader thread until the run ends or ``close``."""
        self._thread = threading.Thread(target=self._read_loop, name=f"viewer-{self.run_id}", daemon=True)
        self._thread.start()
        return self._thread

    def _read_loop(self) -> None:
        final = self.state not in ACTIVE  # it may have ended before we connected (the hello says so)
        if final:  # then the hello's state is the run's last word: the sinks hear it like any other end
            from engine.events import StateEvent

            self._emit(StateEvent(self.run_id, self.state, self.message or "", self.step, self.epoch))
        try:
            while True:
                d = self._read_json()
                if d is None:
                    break
                if "reply" in d:
                    self._answered(d)
                    continue
                if d.get("event") == "hello":
                    self._apply_hello(d)
                    self._emit(ResyncEvent(self.run_id, step=self.step))
                    continue
                for ev in decode_events(d):
                    self._mirror(ev)
                    self._emit(ev)
                    final = final or (ev.kind == "state" and ev.state not in ACTIVE)
        except (OSError, ControlError, ProtocolError):
            pass
        finally:
            for waiter in list(self._waiting.values()):
                waiter[1] = {"ok": False, "error": "the run is no longer live"}
                waiter[0].set()
            if not final and not self._closed:
                from engine.events import StateEvent

                # the runner is gone before we heard its last word (a viewer stopped for a while misses the end of
                # the stream): the store it recorded the ending in says how the run ended
                ended = self._ending_from_store()
                if ended is not None:
                    self.state, self.message, self.step, self.epoch = ended
                else:
                    self.state, self.message = "disconnected", "lost the connection to the runner"
                self._emit(StateEvent(self.run_id, self.state, self.message, self.step, self.epoch))

    def _ending_from_store(self, wait: float = 2.0) -> tuple | None:
        """(state, message, step, epoch) of this run's ending as its store has it, or None while it reads live
        after ``wait`` seconds (the runner records its ending before it closes its socket)."""
        from .store import Store

        deadline = time.monotonic() + wait
        while True:
            try:
                with Store(self.run_dir.parent, create=False, readonly=True) as store:
                    run = store.get_run(self.run_id, metrics=False, events=False)
            except Exception:  # noqa: BLE001  (no store to ask: say we lost the connection)
                return None
            if run["state"] not in ACTIVE:
                return run["state"], run.get("message") or "", run.get("step") or self.step, \
                    run.get("epoch") or self.epoch
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def _mirror(self, ev) -> None:
        k = ev.kind
        if k == "step":
            self.step, self.epoch, self.lr, self.img_per_s = ev.step, ev.epoch, ev.lr, ev.img_per_s
            self.total_steps = ev.total_steps or self.total_steps
        elif k == "eval":
            self.best_psnr, self.last_eval = ev.best_psnr, ev
            if ev.psnr == ev.best_psnr:
                self.best_step = ev.step
        elif k == "state":
            self.state, self.message = ev.state, ev.message
        elif k == "control" and ev.action in ("lr", "set") and ev.value is not None:
            if ev.action == "lr":
                self.lr = ev.value
            if ev.name in self._hyper:
                self._hyper[ev.name]["value"] = ev.value

    def _emit(self, ev) -> None:
        for sink in self._sinks:
            try:
                sink(ev)
            except Exception:
                pass

    # ----------------------------------------------------------------------------------------------- commands
    def _answered(self, d: dict) -> None:
        waiter = self._waiting.get(d.get("reply"))
        if waiter is not None:
            waiter[1] = d
            waiter[0].set()

    def call(self, cmd: str, timeout: float = 30.0, **fields) -> dict:
        """Send one command and wait for its answer; ControlError (one line) when it is refused."""
        if self._closed:
            raise ControlError("not connected")
        msg_id = next(self._ids)
        waiter = [threading.Event(), None]
        self._waiting[msg_id] = waiter
        try:
            with self._send_lock:
                self._sock.sendall(line({"id": msg_id, "cmd": cmd, **fields}))
            if self._thread is None:  # not following: read until our answer comes
                self._sock.settimeout(timeout)
                try:
                    while not waiter[0].is_set():
                        d = self._read_json()
                        if d is None:
                            raise ControlError("the run is no longer live")
                        if "reply" in d:
                            self._answered(d)
                except socket.timeout:
                    raise ControlError(f"no answer to {cmd} within {timeout:g} s") from None
                finally:
                    self._sock.settimeout(None)
            elif not waiter[0].wait(timeout):
                raise ControlError(f"no answer to {cmd} within {timeout:g} s")
        except OSError as e:
            raise ControlError(f"the run is no longer live ({e.strerror or e})") from None
        finally:
            self._waiting.pop(msg_id, None)
        reply = waiter[1]
        if not reply.get("ok"):
            if reply.get("code") == "better":
                from .export import BetterTargetError

                raise BetterTargetError(reply.get("error", ""), reply.get("theirs"), reply.get("ours"))
            raise ControlError(reply.get("error") or f"{cmd} refused")
        return reply.get("result") or {}

    def pause(self) -> None:
        self.call("pause")

    def resume(self) -> None:
        self.call("resume")

    def stop(self, reason: str = "") -> None:
        self.call("stop", by=f"{reason or 'stopped by a viewer'} (pid {os.getpid()})"[:200])

    def set_lr(self, lr) -> None:
        try:
            value = float(lr)
        except (TypeError, ValueError):
            raise ValueError(f"learning rate must be a positive number, got {lr!r}") from None
        try:
            self.call("lr", value=value)
        except ControlError as e:
            raise ValueError(str(e)) from None

    def hyperparameters(self) -> dict:
        """The run's live hyper-parameters as the runner last said (values follow its events)."""
        return {k: dict(v) for k, v in self._hyper.items()}

    def set_hyperparameter(self, name: str, value) -> None:
        if name == "threads":  # auto travels as 0
            value = threads_value(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        try:
            self.call("set", name=name, value=number)
        except ControlError as e:
            raise ValueError(str(e)) from None

    def export(self, path: str | os.PathLike | None = None, force: bool = False) -> dict:
        """The runner's verified export of its best weights (``sessions.export.export_run``)."""
        fields = {"force": force}
        if path is not None:
            fields["path"] = str(Path(path).resolve())
        return self.call("save", timeout=600, **fields)

    def status(self) -> dict:
        return self.call("status")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Detach: the run goes on."""
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def latest_patches(self):
        e = self.last_eval
        return (e.noisy, e.denoised, e.clean) if e is not None and e.noisy is not None else None


__all__ = ["ControlError", "ControlServer", "RemoteRun", "ResyncEvent", "connect", "live_elsewhere", "socket_path"]


def live_elsewhere(runs_dir: str | os.PathLike, known=()) -> list[dict]:
    """Runs whose runner answers on its control socket in ``runs_dir`` but which are not in ``known`` (the store
    lost them: its -wal file deleted under a live run, say): ``{"id", "engine", "state", "step", "pid"}``, newest
    first. A live run stays reachable through its socket whatever the store says."""
    found = []
    for sock in sorted(Path(runs_dir).glob(f"*/{SOCKET_NAME}"), reverse=True):
        run_id = sock.parent.name
        if run_id in known:
            continue
        try:
            h = RemoteRun(sock.parent, timeout=2.0)
        except (ControlError, OSError):
            continue
        try:
            found.append({"id": run_id, "engine": h.config.engine, "state": h.state, "step": h.step, "pid": h.pid,
                          "started": 0.0})
        finally:
            h.close()
    return found
