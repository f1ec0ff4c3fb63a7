"""The trainer's sink into the store: metric points are buffered and written in batches (at most once a second or
every 500 points), everything else (state changes, control actions, saved checkpoints) is written at once together
with whatever is buffered, so the store is never more than a second behind and never in the way of training."""
from __future__ import annotations

import threading
import time

from engine.events import Event
from engine.states import LIVE

from .store import Store, encode_patches

FLUSH_ROWS = 500
FLUSH_SECONDS = 1.0

_UPSERT_STEP = ("INSERT INTO metrics (run, step, epoch, loss, lr, img_per_s) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run, step) DO UPDATE SET epoch = excluded.epoch, loss = excluded.loss, "
                "lr = excluded.lr, img_per_s = excluded.img_per_s")
_UPSERT_EVAL = ("INSERT INTO metrics (run, step, epoch, psnr) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run, step) DO UPDATE SET psnr = excluded.psnr")


class Recorder:
    def __init__(self, store: Store, run_id: str):
        self.store, self.run_id = store, run_id
        self._lock = threading.Lock()
        self._steps: list[tuple] = []
        self._evals: list[tuple] = []
        self._events: list[tuple] = []
        self._checkpoints: list[tuple] = []
        self._settings: list[tuple] = []    # (run, step, time, name, value) of each live change
        self._system: list[tuple] = []      # (run, time, step, cpu, rss, gpu_util, gpu_mem, disk_free, threads, busy)
        self._samples: list[tuple] = []     # (run, step, shape, noisy, denoised, clean) of each evaluation
        self._progress: tuple | None = None   # step, epoch, lr, total_steps
        self._best: tuple | None = None       # psnr, step
        self._state: tuple | None = None      # state, message, time
        self._lr: float | None = None         # a learning-rate change (steps carry it too, but not while paused)
        self._last_flush = time.monotonic()
        self.points = 0                        # step points written or buffered (for tests and benchmarks)
        # live time: what earlier sessions of this run (before a resume) recorded, plus this session's
        self._active_base = store.active_seconds(run_id)
        self._since = time.time()

    def __call__(self, ev: Event) -> None:
        k = ev.kind
        with self._lock:
            if k == "step":
                self._steps.append((self.run_id, ev.step, ev.epoch, ev.loss, ev.lr, ev.img_per_s))
                self._progress = (ev.step, ev.epoch, ev.lr, ev.total_steps)
                self.points += 1
                if len(self._steps) >= FLUSH_ROWS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                    self._flush()
                return
            if k == "eval":
                self._evals.append((self.run_id, ev.step, ev.epoch, ev.psnr))
                if ev.noisy is not None and ev.denoised is not None and ev.clean is not None:
                    shape, noisy = encode_patches(ev.noisy)
                    self._samples.append((self.run_id, ev.step, shape, noisy, encode_patches(ev.denoised)[1],
                                          encode_patches(ev.clean)[1]))
                return
            if k == "saved":
                self._checkpoints.append((self.run_id, ev.what, ev.path, ev.step, ev.psnr, ev.time))
                if ev.what == "best":
                    self._best = (ev.psnr, ev.step)
                elif ev.what == "export":
                    psnr = f" ({ev.psnr:.2f} dB)" if ev.psnr is not None else ""
                    self._events.append((self.run_id, ev.time, "export", f"{ev.path}{psnr}", ev.step))
            elif k == "control":
                self._events.append((self.run_id, ev.time, ev.action, ev.detail, ev.step))
                if ev.action == "lr" and ev.value is not None:  # also while paused, when no step reports it
                    self._lr = ev.value
                if ev.action in ("lr", "set") and ev.name and ev.value is not None:
                    self._settings.append((self.run_id, ev.step, ev.time, ev.name, ev.value))
            elif k == "system":
                self._system.append((self.run_id, ev.time, ev.step, ev.cpu, ev.rss, ev.gpu_util, ev.gpu_mem,
                                     ev.disk_free, ev.threads, ev.busy))
                return  # with the next batch of points: a sample is no reason to write at once
            elif k == "state":
                self._state = (ev.state, ev.message, ev.time)
                detail = ev.state + (f": {ev.message}" if ev.message else "")
                self._events.append((self.run_id, ev.time, "state", detail, ev.step))
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
        steps, evals, events, cps = self._steps, self._evals, self._events, self._checkpoints
        samples, settings, system = self._samples, self._settings, self._system
        progress, best, state, lr = self._progress, self._best, self._state, self._lr
        if not (steps or evals or events or cps or samples or settings or system or progress or best or state or lr):
            return
        now = time.time()

        def work(conn):
            if steps:
                conn.executemany(_UPSERT_STEP, steps)
            if evals:
                conn.executemany(_UPSERT_EVAL, evals)
            if settings:
                conn.executemany("INSERT OR REPLACE INTO settings (run, step, time, name, value) "
                                 "VALUES (?, ?, ?, ?, ?)", settings)
            if system:
                conn.executemany("INSERT OR REPLACE INTO system (run, time, step, cpu, rss, gpu_util, gpu_mem, "
                                 "disk_free, threads, busy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", system)
            if samples:
                conn.executemany("INSERT OR REPLACE INTO samples (run, step, shape, noisy, denoised, clean) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", samples)
            if events:
                conn.executemany("INSERT INTO events (run, time, kind, detail, step) VALUES (?, ?, ?, ?, ?)", events)
            if cps:
                conn.executemany("INSERT OR REPLACE INTO checkpoints (run, kind, path, step, psnr, time) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", cps)
            if progress:
                conn.execute("UPDATE runs SET step = ?, epoch = ?, lr = ?, total_steps = ? WHERE id = ?",
                             (*progress, self.run_id))
            if lr is not None:  # after progress: the change came after the buffered steps
                conn.execute("UPDATE runs SET lr = ? WHERE id = ?", (lr, self.run_id))
            if best:
                conn.execute("UPDATE runs SET best_psnr = ?, best_step = ? WHERE id = ?", (*best, self.run_id))
            if state:
                s, message, t = state
                conn.execute("UPDATE runs SET state = ?, message = ?, ended = ? WHERE id = ?",
                             (s, message, None if s in LIVE else t, self.run_id))
            conn.execute("UPDATE runs SET updated = ?, active = ? WHERE id = ?",
                         (now, self._active_base + now - self._since, self.run_id))

        self.store._transaction(work)  # raises StoreError; the buffers are kept for the next try
        self._steps, self._evals, self._events, self._checkpoints, self._samples = [], [], [], [], []
        self._settings, self._system = [], []
        self._progress = self._best = self._state = self._lr = None
