"""The control protocol between a runner and its viewers: newline-delimited JSON over a Unix socket, both ways.

Runner -> viewer:
- ``{"event": "hello", ...status, "last_eval": {...} | null}`` first, and again with ``"resync": true`` after the
  runner dropped what a slow viewer had not read yet (the viewer reloads history from the store).
- the trainer's events, as ``n2n-tui train --json`` prints them (``event_dict``), except that eval events carry their
  sample patches (``{"shape": [...], "data": base64 of uint8}``) and consecutive step events travel as one
  ``{"event": "steps", "run", "total_steps", "steps": [[step, epoch, loss, lr, img_per_s, time], ...]}`` line.
- ``{"reply": ID, "ok": true, "result": {...}}`` or ``{"reply": ID, "ok": false, "error": "one line"}`` (plus
  ``"code": "better", "theirs", "ours"`` when a save would replace better weights) for each command.

Viewer -> runner: ``{"id": ID, "cmd": "pause" | "resume" | "stop" | "set" | "save" | "status", ...}`` with
``"name"`` and ``"value"`` (a number) for ``set`` (a live hyper-parameter: ``lr``, ``threads``, what the Model
declares; the Model checks the value), optional ``"path"`` and ``"force"`` for ``save``. Lines over ``MAX_LINE``
bytes, lines that are not JSON objects, and unknown commands get an error reply and change nothing.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from engine import patches
from engine.errors import N2NError
from engine.events import ControlEvent, EvalEvent, Event, SavedEvent, StateEvent, StepEvent, SystemEvent
from engine.headless import event_dict

PROTOCOL = 1
MAX_LINE = 64 * 1024            # bytes in one command line
COMMANDS = ("pause", "resume", "stop", "set", "save", "status")
SOCKET_NAME = "control.sock"
UNIX_PATH_MAX = 100            # sun_path holds 108 bytes; longer paths go through /proc/self/fd


class ProtocolError(N2NError, ValueError):
    """A message that breaks the protocol; the text is what the other side is told, ``msg_id`` the message's id
    when it had one (so the answer reaches whoever waits for it)."""

    def __init__(self, message: str, msg_id=None):
        super().__init__(message)
        self.msg_id = msg_id


# ------------------------------------------------------------------------------------------------------ patches

def socket_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / SOCKET_NAME


def unix_address(path: Path) -> tuple[str, int | None]:
    """An address for ``path`` that fits a Unix socket: the path itself, or ``/proc/self/fd/N/<name>`` through an
    open descriptor of its folder (returned, to be closed by the caller) when the path is too long."""
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        return str(path), None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd

# ------------------------------------------------------------------------------------------------------- events

def encode_event(ev: Event) -> dict:
    d = event_dict(ev)
    if isinstance(ev, EvalEvent):
        for name in ("noisy", "denoised", "clean"):
            d[name] = patches.to_json(getattr(ev, name))
    return d


def encode_steps(steps: list[StepEvent]) -> dict:
    last = steps[-1]
    return {"event": "steps", "run": last.run, "total_steps": last.total_steps,
            "steps": [[e.step, e.epoch, _finite(e.loss), e.lr, e.img_per_s, e.time] for e in steps]}


def _finite(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def line(obj: dict) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def decode_events(d: dict) -> list[Event]:
    """The engine events a runner line stands for (a ``steps`` line is several); [] for other lines."""
    kind, run = d.get("event"), d.get("run", "")
    t = d.get("time")
    extra = {"time": float(t)} if isinstance(t, (int, float)) else {}
    try:
        if kind == "steps":
            total = int(d.get("total_steps") or 0)
            return [StepEvent(run, int(s), int(e), float("nan") if loss is None else float(loss), float(lr),
                              float(ips), total, time=float(tm)) for s, e, loss, lr, ips, tm in d["steps"]]
        if kind == "step":
            return [StepEvent(run, int(d["step"]), int(d["epoch"]), _num(d["loss"]), float(d["lr"]),
                              float(d["img_per_s"]), int(d.get("total_steps") or 0), **extra)]
        if kind == "eval":
            return [EvalEvent(run, int(d["step"]), int(d["epoch"]), _num(d["psnr"]), _num(d.get("best_psnr")),
                              *(patches.from_json(d.get(k)) for k in ("noisy", "denoised", "clean")),
                              d.get("psnr_noisy"), **extra)]
        if kind == "state":
            return [StateEvent(run, str(d["state"]), str(d.get("message", "")), int(d.get("step", 0)),
                               int(d.get("epoch", 0)), **extra)]
        if kind == "control":
            return [ControlEvent(run, str(d["action"]), str(d.get("detail", "")), int(d.get("step", 0)),
                                 d.get("value"), d.get("name"), **extra)]
        if kind == "system":
            return [SystemEvent(run, int(d.get("step", 0)), *(d.get(k) for k in (
                "cpu", "rss", "gpu_util", "gpu_mem", "disk_free", "threads", "busy")), **extra)]
        if kind == "saved":
            return [SavedEvent(run, str(d["path"]), d.get("psnr"), int(d.get("step", 0)), str(d.get("what", "best")),
                               **extra)]
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"damaged {kind} event ({e})") from None
    return []


def _num(v) -> float:
    return float("nan") if v is None else float(v)


# ----------------------------------------------------------------------------------------------------- commands

def parse_command(raw: bytes) -> dict:
    """A viewer's command line as ``{"id", "cmd", ...}``, validated; ProtocolError names what is wrong."""
    try:
        msg = json.loads(raw)
    except RecursionError:
        raise ProtocolError("malformed message: nested too deeply") from None
    except UnicodeDecodeError:
        raise ProtocolError("malformed message: not UTF-8 text") from None
    except ValueError as e:
        why = "a number too long" if "digits" in str(e) else "not valid JSON"
        raise ProtocolError(f"malformed message: {why}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("malformed message: not a JSON object")
    raw_id = msg.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (int, str))):
        raise ProtocolError("malformed message: \"id\" must be a number or a string")  # echoed back, so checked
    msg_id = raw_id
    cmd = msg.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("malformed message: no \"cmd\"", msg_id)
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {cmd[:40]!r} (known: {', '.join(COMMANDS)})", msg_id)
    if cmd == "set":
        if not isinstance(msg.get("name"), str) or not msg["name"]:
            raise ProtocolError("set: name must be a hyper-parameter's name", msg_id)
        if isinstance(msg.get("value"), bool) or not isinstance(msg.get("value"), (int, float)):
            raise ProtocolError(f"set: value must be a number, got {msg.get('value')!r}", msg_id)
    if cmd == "stop" and msg.get("by") is not None and (not isinstance(msg["by"], str) or len(msg["by"]) > 200):
        raise ProtocolError("stop: by must be a short text saying who stops the run", msg_id)
    if cmd == "save":
        if msg.get("path") is not None and (not isinstance(msg["path"], str) or not msg["path"].strip()):
            raise ProtocolError("save: path must be a non-empty string", msg_id)
        if not isinstance(msg.get("force", False), bool):
            raise ProtocolError("save: force must be true or false", msg_id)
    return msg
