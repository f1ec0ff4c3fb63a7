"""The session store: every run, its metric points, its events and checkpoints, in ``<runs>/sessions.sqlite``.

SQLite in WAL mode, so a training process and any number of viewers (``n2n-tui runs``, the dashboard's run list) use
it at once. One folder per run (``<runs>/<id>/``) holds its checkpoint files (written by the trainer) and a ``.lock``
file that the process owning the run holds with ``flock`` while it lives: a run still marked running or paused whose
lock can be taken belongs to a process that is gone (killed, crashed) and reads ``crashed`` from then on.

The store and the run folders are private to their owner whatever the umask: folders 0700, the database (with
its -wal and -shm files, which SQLite creates with the database's own mode) and every file 0600, or group-readable
when the owner shared the runs folder with a group on purpose (``engine.fileio.run_modes``). A database, lock or
log that is a symbolic link is refused, not followed.

A database that is corrupt or belongs to something else raises :class:`StoreError` and is never written to. A store
opened ``readonly`` (``n2n-tui runs``, ``show``) never writes either, so it can be read from a read-only folder; runs
whose process is gone then read ``crashed`` without being marked so. Older schemas are upgraded in place by the
first store that opens them for writing (``MIGRATIONS``).

Its parts: ``sessions.store_file`` (the schema, its migrations, opening the database safely) and
``sessions.run_locks`` (which process drives a run); the recorder writes through ``write_batch``.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import patches
from engine.config import RunConfig, new_run_id
from engine.fileio import make_dir, pid_alive, run_modes
from engine.states import LIVE, PENDING_OR_RUNNING, STORED, RunState

from .run_locks import RunLocks
from .store_file import DB_NAME, RUN_COLUMNS, SWEEP_COLUMNS, OlderStoreError, StoreError, StoreFile

_UPSERT_STEP = ("INSERT INTO metrics (run, step, epoch, loss, lr, img_per_s) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run, step) DO UPDATE SET epoch = excluded.epoch, loss = excluded.loss, "
                "lr = excluded.lr, img_per_s = excluded.img_per_s")
_UPSERT_EVAL = ("INSERT INTO metrics (run, step, epoch, psnr) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run, step) DO UPDATE SET psnr = excluded.psnr")


@dataclass
class RunBatch:
    """What a run's recorder buffered since its last write: rows as tuples in their table's column order (run id
    first), and the run row's new values; ``Store.write_batch`` writes it in one transaction."""
    steps: list = field(default_factory=list)        # metrics: (run, step, epoch, loss, lr, img_per_s)
    evals: list = field(default_factory=list)        # metrics: (run, step, epoch, psnr)
    settings: list = field(default_factory=list)     # (run, step, time, name, value)
    system: list = field(default_factory=list)       # (run, time, step, cpu, rss, gpu_util, gpu_mem, disk_free, ...)
    samples: list = field(default_factory=list)      # (run, step, shape, noisy, denoised, clean)
    events: list = field(default_factory=list)       # (run, time, kind, detail, step)
    checkpoints: list = field(default_factory=list)  # (run, kind, path, step, psnr, time)
    progress: tuple | None = None                    # (step, epoch, lr, total_steps)
    lr: float | None = None                          # a learning rate set after the buffered steps
    best: tuple | None = None                        # (psnr, step)
    psnr_noisy: float | None = None                  # the noisy validation input's PSNR (the baseline)
    state: tuple | None = None                       # (state, message, time)
    active: float | None = None                      # seconds the run has been live, all its sessions together

    def __bool__(self) -> bool:
        return any((self.steps, self.evals, self.settings, self.system, self.samples, self.events, self.checkpoints,
                    self.progress, self.lr is not None, self.best, self.state, self.psnr_noisy is not None))


def settings_changes(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The live hyper-parameters that changed during a run: ``{name: [(step, value), ...]}`` from its first value."""
    by_name: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        values = by_name.setdefault(h["name"], [])
        if not values or values[-1][1] != h["value"]:
            values.append((h["step"], h["value"]))
    return {k: v for k, v in by_name.items() if len(v) > 1}


class Store(StoreFile, RunLocks):
    def __init__(self, runs_dir: str | os.PathLike = "runs", *, create: bool = True, readonly: bool = False):
        self.root = Path(runs_dir)
        self.db_path = self.root / DB_NAME
        self.readonly = readonly
        self._lock = threading.RLock()
        self._held: dict[str, int] = {}   # run id -> fd of its .lock, held by this process
        self._gone: set[str] = set()      # read-only: live-marked runs whose process is gone
        self._conn: sqlite3.Connection | None = None
        self.folder_mode, self.file_mode = run_modes(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root}: exists and is not a directory")
        if not self.db_path.exists() and (not create or readonly):
            return  # nothing recorded yet: an empty, read-only view
        if readonly:
            try:
                self._conn = self._open_readonly()
            except OlderStoreError:
                if not os.access(self.root, os.W_OK) or not os.access(self.db_path, os.W_OK):
                    raise
                self._open().close()  # an older schema in a folder we may write: upgrade it once, then only read
                self._conn = self._open_readonly()
            return
        if not self.root.exists():
            try:
                make_dir(self.root, 0o700, parents=True)
            except FileExistsError:
                pass  # another process made it just now
            except OSError as e:
                raise StoreError(f"{self.root}: cannot create the runs folder ({e.strerror})") from None
        self.folder_mode, self.file_mode = run_modes(self.root)   # the folder exists now: its own say
        self._conn = self._open()
        self._reap()

    # ------------------------------------------------------------------------------------------------ opening


    def close(self) -> None:
        with self._lock:
            for run_id in list(self._held):
                self.release(run_id)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _exec(self, sql: str, params=()):
        if self._conn is None:
            raise StoreError(f"{self.root}: no runs recorded here")
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StoreError(self._why(e)) from None

    def _transaction(self, work) -> None:
        """Run ``work(conn)`` in one write transaction."""
        if self._conn is None:
            raise StoreError(f"{self.root}: no runs recorded here")
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite ends a transaction itself on some errors (a full disk)
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise StoreError(self._why(e)) from None


    # ---------------------------------------------------------------------------------------- liveness (locks)
    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id


    # ------------------------------------------------------------------------------------------------- writing
    def new_run(self, config: RunConfig) -> str:
        """Record a new run (state ``running``, owned by this process); returns its id."""
        cfg = config.to_dict() if isinstance(config, RunConfig) else dict(config)
        for _ in range(10):
            run_id = new_run_id()
            try:
                make_dir(self.run_dir(run_id), self.folder_mode)
                break
            except FileExistsError:
                continue
        else:
            raise StoreError("could not find a free run id")
        self.acquire(run_id)  # before the row exists: a viewer must never see it unlocked
        now = time.time()
        self._transaction(lambda c: c.execute(
            "INSERT INTO runs (id, engine, config, state, lr, started, updated, pid, host) "
            "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
            (run_id, int(cfg["engine"]), json.dumps(cfg), cfg.get("lr"), now, now, os.getpid(),
             socket.gethostname())))
        return run_id

    def begin_resume(self, run_id: str, step: int, note: str = "") -> None:
        """Take over a stopped/crashed/failed run to continue it from ``step``. Its recorded points are kept (a step
        done again overwrites its point); the restart is an event."""
        self.acquire(run_id)
        now = time.time()

        def work(conn):
            conn.execute("UPDATE runs SET state = 'running', message = '', ended = NULL, updated = ?, pid = ?, "
                         "host = ?, step = ? WHERE id = ?", (now, os.getpid(), socket.gethostname(), step, run_id))
            conn.execute("INSERT INTO events (run, time, kind, detail, step) VALUES (?, ?, 'restart', ?, ?)",
                         (run_id, now, note or f"resumed from step {step}", step))
        self._transaction(work)

    def set_state(self, run_id: str, state: str, message: str = "") -> None:
        if state not in STORED:
            raise StoreError(f"unknown state {state!r}")
        now = time.time()
        ended = now if state not in LIVE else None

        def work(conn):
            conn.execute("UPDATE runs SET state = ?, message = ?, ended = ?, updated = ? WHERE id = ?",
                         (state, message, ended, now, run_id))
            conn.execute("INSERT INTO events (run, time, kind, detail) VALUES (?, ?, 'state', ?)",
                         (run_id, now, state + (f": {message}" if message else "")))
        self._transaction(work)
        if state not in LIVE:
            self.release(run_id)

    def add_event(self, run_id: str, kind: str, detail: str = "", step: int | None = None) -> None:
        self._transaction(lambda c: c.execute(
            "INSERT INTO events (run, time, kind, detail, step) VALUES (?, ?, ?, ?, ?)",
            (run_id, time.time(), kind, detail, step)))

    def record_checkpoint(self, run_id: str, kind: str, path: str, step: int | None, psnr: float | None) -> None:
        self._transaction(lambda c: c.execute(
            "INSERT OR REPLACE INTO checkpoints (run, kind, path, step, psnr, time) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, kind, str(path), step, psnr, time.time())))

    # ------------------------------------------------------------------------------- live settings, system, tags
    def record_settings(self, run_id: str, step: int, values: dict) -> None:
        """The live hyper-parameters in force from ``step`` on (at a start or a resume)."""
        now = time.time()
        rows = [(run_id, step, now, k, float(v)) for k, v in values.items() if isinstance(v, (int, float))]
        self._transaction(lambda c: c.executemany(
            "INSERT OR REPLACE INTO settings (run, step, time, name, value) VALUES (?, ?, ?, ?, ?)", rows))

    def settings(self, run_id: str) -> list[dict]:
        """Every value a live hyper-parameter took, oldest first: ``{step, time, name, value}``."""
        return [dict(step=s, time=t, name=n, value=v) for s, t, n, v in self._exec(
            "SELECT step, time, name, value FROM settings WHERE run = ? ORDER BY time, name", (run_id,))]

    def system(self, run_id: str, since: float = 0.0) -> list[dict]:
        cols = ("time", "step", "cpu", "rss", "gpu_util", "gpu_mem", "disk_free", "threads", "busy")
        return [dict(zip(cols, r)) for r in self._exec(
            f"SELECT {', '.join(cols)} FROM system WHERE run = ? AND time > ? ORDER BY time", (run_id, since))]

    def set_tag(self, run_id: str, text: str) -> None:
        self._transaction(lambda c: c.execute("UPDATE runs SET tag = ? WHERE id = ?", (text, run_id)))

    # ------------------------------------------------------------------------------------------------ sweeps
    def new_sweep(self, sweep_id: str, spec: dict, storage: str) -> None:
        now = time.time()
        self._transaction(lambda c: c.execute(
            "INSERT INTO sweeps (id, spec, storage, state, started, updated, pid, host) "
            "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
            (sweep_id, json.dumps(spec), storage, now, now, os.getpid(), socket.gethostname())))

    def set_sweep_state(self, sweep_id: str, state: str, best_run: str | None = None,
                        best_psnr: float | None = None) -> None:
        now = time.time()
        ended = None if state in PENDING_OR_RUNNING else now
        self._transaction(lambda c: c.execute(
            "UPDATE sweeps SET state = ?, ended = ?, updated = ?, pid = ?, host = ?, "
            "best_run = coalesce(?, best_run), best_psnr = coalesce(?, best_psnr) WHERE id = ?",
            (state, ended, now, os.getpid(), socket.gethostname(), best_run, best_psnr, sweep_id)))

    def list_sweeps(self) -> list[dict]:
        """Every sweep, oldest first, with its trial count; one whose driver is gone reads ``crashed``."""
        if self._conn is None:
            return []
        rows = self._exec(f"SELECT {', '.join(SWEEP_COLUMNS)} FROM sweeps ORDER BY started, id")
        out = []
        for row in rows:
            d = dict(zip(SWEEP_COLUMNS, row))
            d["spec"] = json.loads(d["spec"])
            d["trials"] = [r["id"] for r in self.trial_runs(d["id"])]
            if d["state"] in PENDING_OR_RUNNING and not self._pid_alive(d["pid"], d["host"]):
                d["state"] = RunState.CRASHED
            out.append(d)
        return out

    def get_sweep(self, ref: str) -> dict:
        ref = (ref or "").strip()
        sweeps = self.list_sweeps()
        if not ref:
            raise StoreError("empty sweep reference: give a sweep id, a unique prefix of one, or 'last'")
        if ref == "last" and sweeps:
            return sweeps[-1]
        found = [s for s in sweeps if s["id"] == ref] or [s for s in sweeps if s["id"].startswith(ref)]
        if not found:
            raise StoreError(f"no sweep matches {ref!r} (see n2n-tui sweeps)")
        if len(found) > 1:
            raise StoreError(f"{ref!r} is ambiguous: it matches {len(found)} sweeps")
        return found[0]

    def write_batch(self, run_id: str, b: RunBatch) -> None:
        """A recorder's batch, in one transaction (StoreError when it cannot be written: nothing of it is)."""
        now = time.time()

        def work(conn):
            conn.executemany(_UPSERT_STEP, b.steps)
            conn.executemany(_UPSERT_EVAL, b.evals)
            conn.executemany("INSERT OR REPLACE INTO settings (run, step, time, name, value) VALUES (?, ?, ?, ?, ?)",
                             b.settings)
            conn.executemany("INSERT OR REPLACE INTO system (run, time, step, cpu, rss, gpu_util, gpu_mem, "
                             "disk_free, threads, busy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", b.system)
            conn.executemany("INSERT OR REPLACE INTO samples (run, step, shape, noisy, denoised, clean) "
                             "VALUES (?, ?, ?, ?, ?, ?)", b.samples)
            conn.executemany("INSERT INTO events (run, time, kind, detail, step) VALUES (?, ?, ?, ?, ?)", b.events)
            conn.executemany("INSERT OR REPLACE INTO checkpoints (run, kind, path, step, psnr, time) "
                             "VALUES (?, ?, ?, ?, ?, ?)", b.checkpoints)
            if b.progress:
                conn.execute("UPDATE runs SET step = ?, epoch = ?, lr = ?, total_steps = ? WHERE id = ?",
                             (*b.progress, run_id))
            if b.lr is not None:  # after progress: the change came after the buffered steps
                conn.execute("UPDATE runs SET lr = ? WHERE id = ?", (b.lr, run_id))
            if b.psnr_noisy is not None:
                conn.execute("UPDATE runs SET psnr_noisy = ? WHERE id = ?", (b.psnr_noisy, run_id))
            if b.best:
                conn.execute("UPDATE runs SET best_psnr = ?, best_step = ? WHERE id = ?", (*b.best, run_id))
            if b.state:
                state, message, t = b.state
                conn.execute("UPDATE runs SET state = ?, message = ?, ended = ? WHERE id = ?",
                             (state, message, None if state in LIVE else t, run_id))
            conn.execute("UPDATE runs SET updated = ?, active = coalesce(?, active) WHERE id = ?",
                         (now, b.active, run_id))

        self._transaction(work)

    def trial_runs(self, sweep_id: str) -> list[dict]:
        """The runs of a sweep's trials, oldest first."""
        rows = self._exec(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE json_extract(config, '$.sweep') = ? "
                          "ORDER BY started, id", (sweep_id,))
        return [self._row_dict(r) for r in rows]

    def find_trial_run(self, sweep_id: str, trial_id: str) -> str | None:
        rows = self._exec("SELECT id FROM runs WHERE json_extract(config, '$.sweep') = ? AND "
                          "json_extract(config, '$.trial') = ?", (sweep_id, trial_id))
        return rows[0][0] if rows else None

    @staticmethod
    def _pid_alive(pid, host) -> bool:
        if not pid or host != socket.gethostname():
            return True  # cannot tell from here
        return pid_alive(pid)

    def active_seconds(self, run_id: str) -> float:
        """Seconds the run has been live so far, over all its sessions."""
        row = self._exec("SELECT active FROM runs WHERE id = ?", (run_id,))
        return float(row[0][0]) if row and row[0][0] is not None else 0.0

    # ------------------------------------------------------------------------------------------------- reading
    def resolve(self, ref: str) -> str:
        """A full run id from an id, a unique id prefix, or ``last``."""
        if self._conn is None:
            raise StoreError(f"{self.root}: no runs recorded here")
        ref = (ref or "").strip()
        if not ref:
            raise StoreError("empty run reference: give a run id, a unique prefix of one, or 'last'")
        if ref == "last":
            row = self._exec("SELECT id FROM runs ORDER BY started DESC, id DESC LIMIT 1")
            if not row:
                raise StoreError(f"{self.root}: no runs recorded yet")
            return row[0][0]
        if self._exec("SELECT 1 FROM runs WHERE id = ?", (ref,)):
            return ref
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = [r[0] for r in self._exec("SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id", (pattern,))]
        if not rows:
            raise StoreError(f"no run matches {ref!r} (see n2n-tui runs)")
        if len(rows) > 1:
            shown = ", ".join(rows[:4]) + (", ..." if len(rows) > 4 else "")
            raise StoreError(f"{ref!r} is ambiguous: it matches {len(rows)} runs ({shown})")
        return rows[0]

    def _row_dict(self, row) -> dict:
        d = dict(zip(RUN_COLUMNS, row))
        if d["id"] in self._gone:  # read-only: what _reap would have written
            d["state"], d["ended"] = RunState.CRASHED, d["updated"]
        d["config"] = json.loads(d["config"])
        d["run_dir"] = str(self.run_dir(d["id"]))
        return d

    def list_runs(self) -> list[dict]:
        """Every run, oldest first: id, engine, state, step, epoch, lr, best_psnr, best_step, started, ended, config."""
        if self._conn is None:
            return []
        self._reap()
        rows = self._exec(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY started, id")
        return [self._row_dict(r) for r in rows]

    def get_run(self, ref: str, *, metrics: bool = True, events: bool = True) -> dict:
        """One run with its metric series and events."""
        run_id = self.resolve(ref)
        self._reap()
        row = self._exec(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,))
        d = self._row_dict(row[0])
        if metrics:
            d["metrics"] = [dict(step=s, epoch=e, loss=lo, lr=lr, psnr=p) for s, e, lo, lr, p in self._exec(
                "SELECT step, epoch, loss, lr, psnr FROM metrics WHERE run = ? ORDER BY step", (run_id,))]
        if events:
            d["events"] = [dict(time=t, kind=k, detail=det, step=s) for t, k, det, s in self._exec(
                "SELECT time, kind, detail, step FROM events WHERE run = ? ORDER BY id", (run_id,))]
        d["settings"] = self.settings(run_id)  # the live hyper-parameters' values, from which step on
        d["checkpoints"] = [dict(kind=k, path=p, step=s, psnr=ps, time=t) for k, p, s, ps, t in self._exec(
            "SELECT kind, path, step, psnr, time FROM checkpoints WHERE run = ? ORDER BY kind", (run_id,))]
        return d

    # ----------------------------------------------------------------------------------- sample patches (schema 3)
    def samples(self, ref: str, step: int | None = None) -> dict:
        """The sample patches of one evaluation of run ``ref``: ``{"steps": [every step with patches], "step",
        "noisy", "denoised", "clean"}``, the patches as uint8 (K, 3, H, W) numpy arrays of ``step`` (default: the
        last); with no patches recorded, ``steps`` is empty and the rest None."""
        run_id = self.resolve(ref)
        steps = [r[0] for r in self._exec("SELECT step FROM samples WHERE run = ? ORDER BY step", (run_id,))]
        if not steps:
            return {"steps": [], "step": None, "noisy": None, "denoised": None, "clean": None}
        if step is None:
            step = steps[-1]
        row = self._exec("SELECT shape, noisy, denoised, clean FROM samples WHERE run = ? AND step = ?",
                         (run_id, step))
        if not row:
            raise StoreError(f"run {run_id} has no sample patches at step {step} (it has them at "
                             f"{len(steps)} steps, {steps[0]} to {steps[-1]})")
        shape, *blobs = row[0]
        noisy, denoised, clean = (patches.from_bytes(b, shape) for b in blobs)
        return {"steps": steps, "step": step, "noisy": noisy, "denoised": denoised, "clean": clean}
