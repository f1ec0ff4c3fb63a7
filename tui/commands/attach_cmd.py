"""``n2n-tui attach [RUN]``: the dashboard of a live run (default: the newest), or its events as JSON lines; and
``n2n-tui ctl RUN COMMAND``: steer a live run from a shell."""
from __future__ import annotations

import json
import os
from pathlib import Path

from engine.headless import event_dict
from engine.threads import threads_text, threads_value
from sessions import Store
from sessions.control import ControlError, RemoteRun, live_elsewhere
from sessions.store import StoreError
from engine.states import ACTIVE, CLEAN_END, LIVE


def live_run(runs_dir, ref: str | None) -> dict:
    """The run ``ref`` (default: the newest live one), which must be live. A runner the store has lost (its -wal
    file deleted under it) is still found through its socket."""
    try:
        return _live_run(runs_dir, ref)
    except StoreError:
        lost = [r for r in live_elsewhere(runs_dir) if ref in (None, "last") or r["id"].startswith(ref)]
        if len(lost) == 1 or (lost and ref in (None, "last")):
            return lost[0]
        raise


def _live_run(runs_dir, ref: str | None) -> dict:
    with Store(runs_dir, create=False, readonly=True) as store:
        if ref is None:
            live = [r for r in store.list_runs() if r["state"] in LIVE]
            if not live:
                raise StoreError(f"no live run in {store.root}: start one with n2n-tui train, or see n2n-tui runs")
            return max(live, key=lambda r: (r["started"], r["id"]))
        run = store.get_run(ref, metrics=False, events=False)
    if run["state"] not in LIVE:
        raise StoreError(f"run {run['id']} is {run['state']}, not live (see n2n-tui show {run['id']})")
    return run


def attach_run(runs_dir, run_id: str):
    """``(RemoteRun, Store)`` of a live run: its runner's control socket, and the store to backfill from."""
    store = Store(runs_dir)
    try:
        return RemoteRun(store.run_dir(run_id)), store
    except BaseException:
        store.close()
        raise


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
    fields = {}
    if action in ("lr", "set"):
        try:
            fields["value"] = float(threads_value(values[-1]) if values[:1] == ["threads"] else values[-1])
        except ValueError as e:
            raise ControlError(f"{action}: {e}" if values[:1] == ["threads"]
                               else f"{action}: expected a number, got {values[-1]!r}") from None
        if action == "set":
            fields["name"] = values[0]
    elif action == "stop":
        fields["by"] = f"stopped by n2n-tui ctl (pid {os.getpid()}, user {_user()})"
    elif action == "save":
        if values:
            fields["path"] = str(Path(values[0]).resolve())
        fields["force"] = args.force
    handle = RemoteRun(run_dir)
    try:
        result = handle.call(action, timeout=600, **fields)
    finally:
        handle.close()
    if action == "status" or args.json:
        print(json.dumps(result))
    elif action == "save":
        print(f"wrote {result['path']}: run {result['run']}, {result['psnr']:.2f} dB on {result['n_val']} validation "
              "images, verified by reloading")
    elif action == "lr":
        print(f"run {run['id']}: learning rate {result['lr']:g}")
    elif action == "set":
        shown = threads_text(int(result["value"])) if result["name"] == "threads" else f"{result['value']:g}"
        print(f"run {run['id']}: {result['name']} {shown} (from its next step)")
    else:
        print(f"run {run['id']}: {action} sent")
    return 0


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
