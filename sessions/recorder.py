"""The trainer's sink into the store: metric points are buffered and written in batches (at most once a second or
every 500 points), everything else (state changes, control actions, saved checkpoints) is written at once together
with whatever is buffered, so the store is never more than a second behind and never in the way of training."""
from __future__ import annotations

import threading
import time

from engine import patches
from engine.events import Event
from engine.states import LIVE

from .store import RunBatch, Store

FLUSH_ROWS = 500
FLUSH_SECONDS = 1.0

class Recorder:
    def __init__(self, store: Store, run_id: str):
        self.store, self.run_id = store, run_id
        self._lock = threading.Lock()
        self._batch = RunBatch()               # what is buffered: ``Store.write_batch`` writes it
        self._last_flush = time.monotonic()
        self.points = 0                        # step points written or buffered (for tests and benchmarks)
        # live time: what earlier sessions of this run (before a resume) recorded, plus this session's
        self._active_base = store.active_seconds(run_id)
        self._since = time.time()

    def __call__(self, ev: Event) -> None:
        k = ev.kind
        with self._lock:
            b = self._batch
            if k == "step":
                b.steps.append((self.run_id, ev.step, ev.epoch, ev.loss, ev.lr, ev.img_per_s))
                b.progress = (ev.step, ev.epoch, ev.lr, ev.total_steps)
                self.points += 1
                if len(b.steps) >= FLUSH_ROWS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                    self._flush()
                return
            if k == "eval":
                b.evals.append((self.run_id, ev.step, ev.epoch, ev.psnr))
                if ev.psnr_noisy is not None:
                    b.psnr_noisy = ev.psnr_noisy
                if ev.noisy is not None and ev.denoised is not None and ev.clean is not None:
                    shape, noisy = patches.to_bytes(ev.noisy)
                    b.samples.append((self.run_id, ev.step, shape, noisy, patches.to_bytes(ev.denoised)[1],
                                          patches.to_bytes(ev.clean)[1]))
                return
            if k == "saved":
                b.checkpoints.append((self.run_id, ev.what, ev.path, ev.step, ev.psnr, ev.time))
                if ev.what == "best":
                    b.best = (ev.psnr, ev.step)
                elif ev.what == "export":
                    psnr = f" ({ev.psnr:.2f} dB)" if ev.psnr is not None else ""
                    b.events.append((self.run_id, ev.time, "export", f"{ev.path}{psnr}", ev.step))
            elif k == "control":
                b.events.append((self.run_id, ev.time, ev.action, ev.detail, ev.step))
                if ev.action == "lr" and ev.value is not None:  # also while paused, when no step reports it
                    b.lr = ev.value
                if ev.action in ("lr", "set") and ev.name and ev.value is not None:
                    b.settings.append((self.run_id, ev.step, ev.time, ev.name, ev.value))
            elif k == "system":
                b.system.append((self.run_id, ev.time, ev.step, ev.cpu, ev.rss, ev.gpu_util, ev.gpu_mem,
                                     ev.disk_free, ev.threads, ev.busy))
                return  # with the next batch of points: a sample is no reason to write at once
            elif k == "state":
                b.state = (ev.state, ev.message, ev.time)
                detail = ev.state + (f": {ev.message}" if ev.message else "")
                b.events.append((self.run_id, ev.time, "state", detail, ev.step))
            else:
                return
            self._flush()
        if k == "state" and ev.state not in LIVE:
            self.store.release(self.run_id)  # the run is closed: nobody needs to guard it any more

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def close(self) -> None:
        self.flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        batch = self._batch
        if not batch:
            return
        batch.active = self._active_base + time.time() - self._since
        self.store.write_batch(self.run_id, batch)  # raises StoreError; the batch is kept for the next try
        self._batch = RunBatch()
