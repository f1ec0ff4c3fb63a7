"""The runner: the process that owns a live run. It trains (``Trainer``), records (the store's recorder) and serves
the run's control socket (``ControlServer``) so that any number of viewers can watch and steer it.

``n2n-tui train --headless`` is a runner in the foreground; ``n2n-tui train --detach``, the dashboard and the launcher
start one in the background with ``spawn``: a new session (no controlling terminal, so a closed terminal or a
dropped SSH connection never reaches it), stdin from /dev/null, stdout and stderr into ``runner.log`` in the run
folder (so nothing PyTorch's C++ code prints can garble a screen). SIGTERM and SIGINT stop it cleanly; SIGHUP is
ignored: it has no terminal to lose.

    python -m sessions.runner --runs-dir DIR (--config JSON | --resume RUN) [--device cpu|cuda] [--threads N|auto]
                              [--status-fd FD]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from engine.config import RunConfig
from engine.errors import first_line
from engine.fileio import open_nofollow
from engine.states import ACTIVE, CLEAN_END, RunState

from .launch import open_run
from .server import ControlServer
from .store import Store

LOG_NAME = "runner.log"


class RunControl:
    """The control socket's handler: the runner's status, and the commands viewers send."""

    def __init__(self, trainer, store: Store):
        self.trainer, self.store = trainer, store

    def status(self) -> dict:
        import torch  # loaded already: this process trains

        t = self.trainer
        return {"run": t.run_id, "config": t.config.to_dict(), "engine": t.config.engine, "device": t.device,
                "state": t.state, "message": t.message, "step": t.step, "epoch": t.epoch,
                "total_steps": t.total_steps, "lr": t.lr, "best_psnr": t.best_psnr, "best_step": t.best_step,
                "img_per_s": t.img_per_s, "psnr_noisy": t.psnr_noisy, "batch_size": t.batch_size,
                "hyperparameters": t.hyperparameters(),
                "threads": torch.get_num_threads(), "busy_elsewhere": t.threads.busy,
                "pid": os.getpid(), "run_dir": str(t.run_dir)}

    def command(self, msg: dict) -> dict:
        t, cmd = self.trainer, msg["cmd"]
        if cmd == "status":
            return self.status()
        if cmd in ("pause", "resume", "stop", "set") and t.state not in ACTIVE:
            raise ValueError(f"run {t.run_id} is {t.state}: it takes no more {cmd} commands")
        if cmd == "pause":
            t.pause()
        elif cmd == "resume":
            t.resume()
        elif cmd == "stop":
            t.stop(msg.get("by") or "stopped by a viewer")
        elif cmd == "set":
            t.set_hyperparameter(msg["name"], msg["value"])
            return {"name": msg["name"], "value": msg["value"]}
        elif cmd == "save":
            from .export import export_run

            if t.best_psnr is None:
                raise ValueError("nothing to save yet: no evaluation has run")
            return export_run(self.store, t.run_id, msg.get("path"), dataset=t.dataset, force=msg.get("force", False))
        return {"state": t.state}


def serve(trainer, store: Store) -> ControlServer:
    """Start the run's control socket and feed it the trainer's events."""
    server = ControlServer(trainer.run_dir, RunControl(trainer, store)).start()
    trainer.add_sink(server.publish)
    return server


# ---------------------------------------------------------------------------------------------- the process

def _report(fd: int | None, **msg) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(msg) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def _to_log(path: Path, mode: int) -> None:
    """stdout and stderr (the descriptors, so C++ output too) into the run's log (``mode``, a link there refused);
    stdin from /dev/null."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
    null = os.open(os.devnull, os.O_RDONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sessions.runner")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--config", help="RunConfig as JSON (a new run)")
    p.add_argument("--resume", help="run reference (continue a stopped or crashed run)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", default=None, help="resume: the thread setting to continue with (N or auto)")
    p.add_argument("--status-fd", type=int, default=None, help="where to say which run started, or why not")
    args = p.parse_args(argv)

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal to lose
    try:
        config = RunConfig.from_dict(json.loads(args.config)) if args.config is not None else None
        trainer, store = open_run(args.runs_dir, config, resume=args.resume, device=args.device,
                                 threads=args.threads, load=False)
        server = serve(trainer, store)
    except Exception as e:  # bad config, missing data, a run already live...: one line back to whoever started us
        _report(args.status_fd, ok=False, error=first_line(e))
        return 2
    try:
        _to_log(trainer.run_dir / LOG_NAME, trainer.file_mode)
    except OSError as e:  # e.g. runner.log replaced by a symbolic link: refuse to write through it
        server.close()
        store.set_state(trainer.run_id, RunState.FAILED, str(e))
        store.close()
        _report(args.status_fd, ok=False, error=str(e))
        return 2
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} runner pid {os.getpid()} serving run {trainer.run_id} "
          f"({trainer.resume_note or 'new run'})", flush=True)
    _report(args.status_fd, ok=True, run=trainer.run_id, pid=os.getpid())

    def on_signal(signum, frame):
        trainer.stop(f"interrupted ({signal.Signals(signum).name})")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        final = trainer.run()
    finally:
        server.close()
        store.close()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run {trainer.run_id} {final}"
          + (f": {trainer.message}" if trainer.message else ""), flush=True)
    return 0 if final in CLEAN_END else 1


if __name__ == "__main__":
    sys.exit(main())
