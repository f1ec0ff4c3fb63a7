"""``n2n-tui attach [RUN]``: the dashboard of a live run (default: the newest), or its events as JSON lines; and
``n2n-tui ctl RUN COMMAND``: steer a live run from a shell."""
from __future__ import annotations

import json
import os
from pathlib import Path

from engine.headless import event_dict
from engine.live_control import setting_text
from engine.states import ACTIVE, CLEAN_END
from sessions import Store
from sessions.launch import attach_run, live_run
from sessions.remote import ControlError, RemoteRun, wire_value


def attach(args) -> int:
    run = live_run(args.runs_dir, args.run)
    if not args.json:
        from tui.app import require_terminal, run_dashboard

        require_terminal()
        handle, store = attach_run(args.runs_dir, run["id"])
        return run_dashboard(handle, store, args)
    handle = RemoteRun(Store(args.runs_dir, create=False, readonly=True).run_dir(run["id"]))
    final, gone = [], []

    def print_event(ev) -> None:
        d = event_dict(ev)
        try:
            print(json.dumps(d), flush=True)
        except (BrokenPipeError, OSError):  # the reader went away (| head, a closed pipe): so do we, at once
            gone.append(True)
            handle.close()
            return
        if ev.kind == "state" and ev.state not in ACTIVE:
            final.append(ev.state)

    handle.add_sink(print_event)
    handle.start()
    try:
        handle.join()
    except KeyboardInterrupt:  # detach: the run goes on
        handle.close()
        return 130
    if gone:
        raise BrokenPipeError  # the command line's quiet exit for a closed pipe (status 141, as train --json)
    return 0 if final and final[-1] in CLEAN_END else 1


def ctl(args) -> int:
    run = live_run(args.runs_dir, args.run)
    run_dir = Path(args.runs_dir) / run["id"]
    action, values = args.action, list(args.values)
    wanted = {"lr": (1, 1), "set": (2, 2), "save": (0, 1)}.get(action, (0, 0))
    if not wanted[0] <= len(values) <= wanted[1]:
        usage = {"lr": "lr VALUE", "set": "set NAME VALUE", "save": "save [PATH]"}.get(action, action)
        raise ControlError(f"{action} takes {usage.partition(' ')[2] or 'no value'}, got {' '.join(values) or 'none'}"
                           f" (usage: n2n-tui ctl RUN {usage})")
    fields, command = {}, action
    if action in ("lr", "set"):  # ``lr VALUE``: the command line's alias of ``set lr VALUE``
        name, command = ("lr" if action == "lr" else values[0]), "set"
        try:
            fields = {"name": name, "value": wire_value(name, values[-1])}
        except ControlError:
            raise
        except ValueError as e:  # threads: neither a count nor auto
            raise ControlError(f"{action}: {e}") from None
    elif action == "stop":
        fields["by"] = f"stopped by n2n-tui ctl (pid {os.getpid()}, user {_user()})"
    elif action == "save":
        if values:
            fields["path"] = str(Path(values[0]).resolve())
        fields["force"] = args.force
    handle = RemoteRun(run_dir)
    try:
        result = handle.call(command, timeout=600, **fields)
    finally:
        handle.close()
    if args.json:
        print(json.dumps(result))
    elif action == "status":
        print(status_text(result))
    elif action == "save":
        print(f"wrote {result['path']}: run {result['run']}, {result['psnr']:.2f} dB on {result['n_val']} validation "
              "images, verified by reloading")
    elif action == "lr":
        print(f"run {run['id']}: learning rate {result['value']:g}")
    elif action == "set":
        shown = setting_text(result["name"], result["value"])
        print(f"run {run['id']}: {result['name']} {shown} (from its next step)")
    else:
        print(f"run {run['id']}: {action} sent")
    return 0


def status_text(st: dict) -> str:
    """What ``ctl RUN status`` says to a person: one labelled line per subject (``--json`` has every field)."""
    def num(v, fmt: str, unit: str = "") -> str:
        return "-" if v is None else f"{v:{fmt}}{unit}"

    cfg = st.get("config") or {}
    total = f"/{st['total_steps']}" if st.get("total_steps") else ""
    epochs = f"/{cfg['epochs']}" if cfg.get("epochs") else ""
    lines = [("run", f"{st.get('run', '?')}  (engine {st.get('engine', cfg.get('engine', '?'))})"),
             ("state", str(st.get("state", "?")) + (f": {st['message']}" if st.get("message") else "")),
             ("step", f"{st.get('step', 0)}{total}  epoch {st.get('epoch', 0)}{epochs}"),
             ("lr", num(st.get("lr"), ".3g"))]
    if st.get("best_psnr") is not None:
        noisy = f" (noisy input {st['psnr_noisy']:.2f} dB)" if st.get("psnr_noisy") is not None else ""
        lines.append(("best", f"{st['best_psnr']:.2f} dB PSNR at step {st.get('best_step')}{noisy}"))
    else:
        lines.append(("best", "- (no evaluation yet)"))
    lines.append(("speed", num(st.get("img_per_s"), ".0f", " img/s")))
    hyper = st.get("hyperparameters") or {}
    busy, setting = st.get("busy_elsewhere"), (hyper.get("threads") or {}).get("value")
    notes = ([f"setting {_live_value('threads', setting)}"] if setting is not None else []) + \
        ([f"{busy:.1f} cores busy elsewhere"] if busy is not None else [])
    lines.append(("threads", f"{st.get('threads', '?')}" + (f" ({'; '.join(notes)})" if notes else "")))
    lines.append(("device", f"{st.get('device') or '?'}  pid {st.get('pid', '?')}"))
    if hyper:
        lines.append(("settings", "  ".join(f"{name} {_live_value(name, h.get('value'))}"
                                            for name, h in hyper.items())))
    if st.get("run_dir"):
        lines.append(("folder", st["run_dir"]))
    return "\n".join(f"{label:<8} {text}" for label, text in lines)


def _live_value(name: str, value) -> str:
    if value is None:
        return "-"
    return setting_text(name, value) if isinstance(value, (int, float)) else str(value)


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
