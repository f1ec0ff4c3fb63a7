"""Headless runs: a rich progress bar on a terminal, or one JSON object per event per line (``--json``).

The trainer runs in the calling (main) thread. The first Ctrl-C (or SIGTERM, or SIGHUP when the terminal closes) asks
it to stop after the current step: the full state is saved, the best weights are already on disk, and the last state
line says ``stopped``. A second Ctrl-C leaves at once. A reader that goes away (``| head``) stops the run the same
way. With nobody at the keyboard, an exploding loss is answered automatically: the trainer has
already rolled back, the learning rate is halved and the run resumes, up to ``max_recoveries`` times.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
from typing import TextIO

from .events import Event
from .states import RunState

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_OUTPUT_CLOSED = 128 + signal.SIGPIPE  # our reader went away (`| head`): what a shell shows for a piped tool
OUTPUT_CLOSED = "output closed"
# stop cleanly (state saved, run "stopped") on Ctrl-C, kill, and a closed terminal or dropped SSH connection
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def event_dict(event: Event) -> dict:
    """``event.to_dict()`` with non-finite floats as null, so every line is strict JSON."""
    d = event.to_dict()
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            d[k] = None
    return d


class JsonLines:
    """Sink: one JSON object per event, flushed at once."""

    def __init__(self, out: TextIO, trainer=None):
        self.out, self.trainer, self.closed = out, trainer, False

    def __call__(self, event: Event) -> None:
        if self.closed:
            return
        try:
            self.out.write(json.dumps(event_dict(event)) + "\n")
            self.out.flush()
        except BrokenPipeError:  # the reader went away (e.g. `| head`): nobody is following, stop cleanly
            self.closed = True
            if self.trainer is not None:
                self.trainer.stop(OUTPUT_CLOSED)


def pipe_console(out: TextIO):
    """A rich Console on ``out`` whose broken pipe raises BrokenPipeError (rich's own reaction is SystemExit(1),
    which would end the training thread as "failed")."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(file=out, soft_wrap=True)


class ProgressPrinter:
    """Sink: a rich progress bar (epoch, step, loss, PSNR, images/s, ETA) plus one line per notable event. When the
    reader of the output goes away, it stops the run cleanly, as ``JsonLines`` does."""

    def __init__(self, trainer, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.trainer, self.console, self.closed = trainer, console, False
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), console=console, refresh_per_second=4)
        self.task = self.progress.add_task(self._epoch_text(), total=trainer.total_steps or None,
                                           completed=trainer.step, info="")
        self.loss = None

    def _epoch_text(self, epoch=None) -> str:
        t = self.trainer
        return f"epoch {epoch if epoch is not None else max(t.epoch, 1)}/{t.config.epochs}"

    def _info(self) -> str:
        t = self.trainer
        parts = [f"loss {self.loss:.4f}" if self.loss is not None and math.isfinite(self.loss) else "loss -"]
        if t.last_psnr is not None:
            parts.append(f"PSNR {t.last_psnr:.2f} dB")
        if t.img_per_s:
            parts.append(f"{t.img_per_s:,.0f} img/s")
            eta = (t.total_steps - t.step) * t.batch_size / t.img_per_s
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return "  ".join(parts)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, ev: Event) -> None:
        if self.closed:
            return
        try:
            self._show(ev)
        except BrokenPipeError:
            self.closed = True
            self.trainer.stop(OUTPUT_CLOSED)

    def _show(self, ev: Event) -> None:
        k = ev.kind
        if k == "step":
            self.loss = ev.loss
            self.progress.update(self.task, completed=ev.step, total=ev.total_steps,
                                 description=self._epoch_text(ev.epoch), info=self._info())
        elif k == "eval":
            noisy = f" (noisy input {ev.psnr_noisy:.2f})" if ev.psnr_noisy is not None else ""
            self.console.print(f"eval   step {ev.step:>6}  epoch {ev.epoch:>3}  PSNR {ev.psnr:6.2f} dB  "
                               f"best {ev.best_psnr:6.2f} dB{noisy if ev.step == 0 else ''}", highlight=False)
            self.progress.update(self.task, info=self._info())
        elif k == "state":
            msg = f"  {ev.message}" if ev.message else ""
            self.console.print(f"[bold]{ev.state}[/bold]  run {ev.run}  step {ev.step}/{self.trainer.total_steps}"
                               f"{msg}", highlight=False)
        elif k == "control":
            detail = ev.detail.strip().splitlines()[-1] if ev.detail.strip() else ""
            self.console.print(f"{ev.action:<6} step {ev.step}  {detail}", highlight=False, markup=False)
        elif k == "saved" and ev.what == "export":
            self.console.print(f"saved  {ev.path}", highlight=False, markup=False)


def auto_recover(trainer, max_recoveries: int):
    """Sink: answers the explosion guard the way a person at the dashboard would (halve the lr, resume)."""
    count = 0

    def sink(ev: Event) -> None:
        nonlocal count
        if ev.kind != "control" or ev.action != "guard":
            return
        if count < max_recoveries:
            count += 1
            trainer.set_lr(trainer.lr / 2)
            trainer.resume()
        else:
            trainer.stop(f"the loss exploded {count + 1} times, even after halving the learning rate "
                         f"{count} times; resume with a lower --lr")

    return sink


def run_headless(trainer, *, json_lines: bool = False, out: TextIO | None = None, err: TextIO | None = None,
                 max_recoveries: int = 3) -> int:
    """Run ``trainer`` to its end in this thread, printing progress. Returns the exit status: 0 finished, 1 failed
    (or stopped by the guard), 128 + signal number when stopped by Ctrl-C / SIGTERM."""
    out = out or sys.stdout
    err = err or sys.stderr
    trainer.prepare()
    trainer.add_sink(auto_recover(trainer, max_recoveries))

    signalled: list[int] = []
    old_handlers = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame):
            if signalled:  # second time: leave now
                raise KeyboardInterrupt
            signalled.append(signum)
            trainer.stop(f"interrupted ({signal.Signals(signum).name})")

        for sig in STOP_SIGNALS:
            old_handlers[sig] = signal.signal(sig, on_signal)
    try:
        if json_lines:
            trainer.add_sink(JsonLines(out, trainer))
            final = trainer.run()
        else:
            console = pipe_console(out)
            with ProgressPrinter(trainer, console) as printer:
                trainer.add_sink(printer)
                final = trainer.run()
            if not printer.closed:
                _summary(trainer, console)
    except BrokenPipeError:  # the progress bar's last refresh, or the summary
        final = trainer.state
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    if final == RunState.STOPPED and trainer.message == OUTPUT_CLOSED:
        return EXIT_OUTPUT_CLOSED
    if final == RunState.FINISHED:
        return EXIT_OK
    if final == RunState.STOPPED and signalled:
        return 128 + signalled[0]
    if final == RunState.FAILED:
        print(f"n2n-tui: error: run {trainer.run_id} failed: {trainer.message}", file=err)
    return EXIT_FAILED


def _summary(trainer, console) -> None:
    t = trainer
    if t.best_psnr is not None:
        gain = f", noisy input {t.psnr_noisy:.2f} dB" if t.psnr_noisy is not None else ""
        console.print(f"best PSNR {t.best_psnr:.2f} dB at step {t.best_step}{gain}; weights: {t.run_dir / 'best.pth'}",
                      highlight=False, markup=False)
        console.print(f"export as a grader bestmodel.pth: n2n-tui export {t.run_id}", highlight=False, markup=False)
