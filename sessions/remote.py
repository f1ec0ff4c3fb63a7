"""The viewers' side of the control socket: ``RemoteRun``, a live run in a runner process as a ``RunHandle``
(``sessions.handle``): attributes mirrored from the runner's hello and events, the same event objects through its
sinks from a reader thread, control methods sent as commands (each waits for its answer). The wire format is in
``sessions.protocol``; the runner's side is ``sessions.server``.
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.config import RunConfig
from engine.errors import N2NError
from engine.events import Event, StateEvent
from engine.live_control import TRAINER_SETTINGS
from engine.states import ACTIVE, RunState

from .protocol import SOCKET_NAME, ProtocolError, decode_events, line, socket_path, unix_address


class ControlError(N2NError, ValueError):
    """A command the run refused, or a run that cannot be reached; the message is one line."""


def wire_value(name: str, value) -> float:
    """A hyper-parameter's value as the ``set`` command carries it: a number (the trainer's own settings turn
    ``auto`` into theirs)."""
    if name in TRAINER_SETTINGS:
        value = TRAINER_SETTINGS[name][0](value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ControlError(f"{name}: expected a number, got {value!r}") from None


def connect(run_dir: str | os.PathLike, timeout: float = 5.0) -> socket.socket:
    """A connection to the run's control socket; ControlError if nobody is there."""
    path = socket_path(run_dir)
    if not path.exists():
        raise ControlError(f"run {Path(run_dir).name} is not live (no control socket in {Path(run_dir)})")
    address, fd = unix_address(path)
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
    """A live run seen through its control socket (a ``RunHandle``): attributes mirrored from the runner's hello and
    events, control methods sent as commands (each waits for its answer). The run lives on when it closes."""

    lives_on = True

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

    @property
    def where(self) -> str:
        return self._where or f"runner pid {self.pid}"

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
        self._where = h.get("where") if isinstance(h.get("where"), str) else None  # a sweep trial says whose it is

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
                    # the runner is gone before we heard its last word (a viewer stopped for a while misses the end of
                # the stream): the store it recorded the ending in says how the run ended
                ended = self._ending_from_store()
                if ended is not None:
                    self.state, self.message, self.step, self.epoch = ended
                else:
                    self.state, self.message = RunState.DISCONNECTED, "lost the connection to the runner"
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

    def hyperparameters(self) -> dict:
        """The run's live hyper-parameters as the runner last said (values follow its events)."""
        return {k: dict(v) for k, v in self._hyper.items()}

    def set_hyperparameter(self, name: str, value) -> dict:
        """Sent as ``set``; the runner's Model checks the value (ControlError, one line, when it refuses)."""
        return self.call("set", name=name, value=wire_value(name, value))

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
