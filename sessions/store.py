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
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path

from engine.config import RunConfig, new_run_id
from engine.fileio import SymlinkError, make_dir, open_nofollow, pid_alive, run_modes
from engine.errors import N2NError
from engine.states import LIVE, STORED, sql_list

from .protocol import SOCKET_NAME, patch_array, patch_bytes

try:
    import fcntl
except ImportError:  # not POSIX: fall back to checking the owner's pid
    fcntl = None

DB_NAME = "sessions.sqlite"
APP = "n2n-tui"
SCHEMA_VERSION = 6
SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE n2n_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, engine INTEGER NOT NULL, config TEXT NOT NULL,
    state TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 0, epoch INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,
    lr REAL, best_psnr REAL, best_step INTEGER,
    started REAL NOT NULL, ended REAL, updated REAL NOT NULL, pid INTEGER, host TEXT,
    active REAL NOT NULL DEFAULT 0
);
CREATE TABLE metrics (
    run TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER, loss REAL, lr REAL, psnr REAL, img_per_s REAL,
    PRIMARY KEY (run, step)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '', step INTEGER
);
CREATE INDEX events_by_run ON events (run, id);
CREATE TABLE checkpoints (
    run TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, step INTEGER, psnr REAL, time REAL NOT NULL,
    PRIMARY KEY (run, kind)
);
"""

RUN_COLUMNS = ("id", "engine", "state", "message", "step", "epoch", "total_steps", "lr", "best_psnr", "best_step",
               "started", "ended", "updated", "pid", "host", "active", "tag", "config")

# every evaluation's sample patches, uint8 (K, 3, H, W) as raw bytes: a few kB each (``Store.samples``)
SAMPLES_TABLE = """CREATE TABLE samples (
    run TEXT NOT NULL, step INTEGER NOT NULL, shape TEXT NOT NULL,
    noisy BLOB NOT NULL, denoised BLOB NOT NULL, clean BLOB NOT NULL,
    PRIMARY KEY (run, step)
) WITHOUT ROWID"""
SCHEMA += SAMPLES_TABLE + ";\n"

# sweeps: a row each (its trials are ordinary runs whose config names the sweep); the driver process owns it
SWEEPS_TABLE = """CREATE TABLE sweeps (
    id TEXT PRIMARY KEY, spec TEXT NOT NULL, storage TEXT NOT NULL, state TEXT NOT NULL,
    best_run TEXT, best_psnr REAL, started REAL NOT NULL, ended REAL, updated REAL NOT NULL, pid INTEGER, host TEXT
)"""
SCHEMA += SWEEPS_TABLE + ";\n"
# the live hyper-parameters' history (a row per value set, and the values in force at each start or resume), what
# the machine did (system samples every few seconds), and a note per run (``n2n-tui tag``)
LIVE_TABLES = [
    """CREATE TABLE settings (run TEXT NOT NULL, step INTEGER NOT NULL, time REAL NOT NULL, name TEXT NOT NULL,
        value REAL, PRIMARY KEY (run, time, name)) WITHOUT ROWID""",
    """CREATE TABLE system (run TEXT NOT NULL, time REAL NOT NULL, step INTEGER, cpu REAL, rss REAL, gpu_util REAL,
        gpu_mem REAL, disk_free REAL, threads INTEGER, busy REAL, PRIMARY KEY (run, time)) WITHOUT ROWID""",
]
SCHEMA += ";\n".join(LIVE_TABLES) + ";\n"
SCHEMA = SCHEMA.replace("active REAL NOT NULL DEFAULT 0\n);", "active REAL NOT NULL DEFAULT 0,\n    tag TEXT NOT NULL DEFAULT ''\n);")
SWEEP_COLUMNS = ("id", "spec", "storage", "state", "best_run", "best_psnr", "started", "ended", "updated", "pid", "host")

# schema version -> the statements that bring a store of that version to the next one
MIGRATIONS = {
    1: [  # seconds a run has been live (a resumed run's time stopped is not counted): until now, ended - started
        "ALTER TABLE runs ADD COLUMN active REAL NOT NULL DEFAULT 0",
        "UPDATE runs SET active = max(0, coalesce(ended, updated) - started)",
    ],
    2: [SAMPLES_TABLE],
    3: [SWEEPS_TABLE],
    4: ["ALTER TABLE runs ADD COLUMN tag TEXT NOT NULL DEFAULT ''", LIVE_TABLES[0],  # the system table as it was
        LIVE_TABLES[1].replace(", threads INTEGER, busy REAL", "")],
    5: ["ALTER TABLE system ADD COLUMN threads INTEGER", "ALTER TABLE system ADD COLUMN busy REAL"],
}


def settings_changes(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The live hyper-parameters that changed during a run: ``{name: [(step, value), ...]}`` from its first value."""
    by_name: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        values = by_name.setdefault(h["name"], [])
        if not values or values[-1][1] != h["value"]:
            values.append((h["step"], h["value"]))
    return {k: v for k, v in by_name.items() if len(v) > 1}


class StoreError(N2NError, ValueError):
    """The store cannot be used as asked (corrupt or foreign database, unknown run, ...)."""


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (next to) no room left: SQLite reports a full disk met while
    creating its -wal or -shm file as a plain I/O error."""
    try:
        return shutil.disk_usage(folder).free < 64 * 1024
    except OSError:
        return False


class Store:
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
    def _open(self) -> sqlite3.Connection:
        db = self.db_path
        if db.exists():
            self._open_checks(db)
        self._make_private(db)
        try:
            conn = sqlite3.connect(db, timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"{db}: cannot be opened ({e})") from None
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "n2n_meta" not in tables:
                raise StoreError(f"{db}: an SQLite database that is not an n2n-tui session store "
                                 f"(tables: {', '.join(sorted(tables)[:5])}); refusing to touch it")
            if tables and self._check_meta(conn) != SCHEMA_VERSION:
                self._migrate(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 10000")
            if not tables:
                conn.execute("BEGIN IMMEDIATE")
                try:  # another process may have created it between our look and our lock
                    if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'n2n_meta'").fetchone()[0] == 0:
                        for stmt in SCHEMA.split(";"):
                            if stmt.strip():
                                conn.execute(stmt)
                        conn.executemany("INSERT INTO n2n_meta VALUES (?, ?)",
                                         [("app", APP), ("schema", str(SCHEMA_VERSION))])
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite ends a transaction itself on some errors (a full disk)
                        conn.execute("ROLLBACK")
                    raise
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(self._why(e, f"{db}: corrupt or unusable session store ({e}); refusing to touch it")) \
                from None
        return conn

    def _open_readonly(self) -> sqlite3.Connection | None:
        """A connection that cannot write. ``mode=ro`` first; in a read-only folder SQLite cannot make the WAL's
        shared-memory file, and ``immutable=1`` (no locking: nobody can be writing there) is what still works."""
        db = self.db_path
        self._open_checks(db)
        for flags in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"{db.resolve().as_uri()}?{flags}", uri=True, timeout=10.0,
                                       isolation_level=None, check_same_thread=False)
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.Error:
                continue
            if not tables:  # being created right now by the first writer: nothing recorded yet
                conn.close()
                return None
            try:
                if "n2n_meta" not in tables:
                    raise StoreError(f"{db}: an SQLite database that is not an n2n-tui session store; refusing to "
                                     "touch it")
                if self._check_meta(conn) != SCHEMA_VERSION:
                    raise StoreError(f"{db}: an older session store that a read-only view cannot upgrade; open it "
                                     "once from a writable folder (e.g. n2n-tui train)")
            except StoreError:
                conn.close()
                raise
            return conn
        raise StoreError(f"{db}: cannot be opened for reading")

    def _make_private(self, db: Path) -> None:
        """The database made (or brought down to) the store's file mode before SQLite opens it: SQLite gives its -wal
        and -shm files the database's own mode. A symbolic link there is refused."""
        try:
            os.close(open_nofollow(db, os.O_RDWR | os.O_CREAT, self.file_mode))
            for suffix in ("-wal", "-shm"):  # left by an older n2n-tui, made under its umask
                side = db.with_name(db.name + suffix)
                if side.exists() and not side.is_symlink():
                    os.close(open_nofollow(side, os.O_RDWR | os.O_CREAT, self.file_mode))
        except OSError as e:
            if isinstance(e, SymlinkError):
                raise StoreError(str(e)) from None
            if e.errno == errno.EROFS:
                raise StoreError(f"{db}: read-only (the runs folder or its file system does not accept writes)") \
                    from None
            if e.errno == errno.ENOSPC:
                raise StoreError(f"no space left on device: {db}") from None
            raise StoreError(f"{db}: cannot be opened ({e.strerror})") from None

    def _open_checks(self, db: Path) -> None:
        if db.is_dir():
            raise StoreError(f"{db}: is a directory, not a session store")
        try:
            with open(db, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise StoreError(f"{db}: cannot be read ({e.strerror})") from None
        if head and head != SQLITE_MAGIC:
            raise StoreError(f"{db}: not an SQLite database; refusing to touch it (move it away to start afresh)")
        if not head:  # empty: a store being created this instant, or one truncated under its run folders
            runs = self._run_folders_with_weights(db.parent)
            if runs:
                raise StoreError(
                    f"{db} is empty, yet {len(runs)} run folder{'s' if len(runs) != 1 else ''} with weights "
                    f"{'are' if len(runs) != 1 else 'is'} beside it (e.g. {runs[0].name}): the store was truncated "
                    f"and the runs' history is lost, but their weights are intact (n2n-tui eval --weights "
                    f"{runs[0] / 'best.pth'}); to go on, move the empty file away "
                    f"(mv {db} {db}.empty) and a new store starts")

    @staticmethod
    def _run_folders_with_weights(root: Path) -> list[Path]:
        try:
            return sorted(d for d in root.iterdir() if d.is_dir() and not d.is_symlink()
                          and ((d / "best.pth").is_file() or (d / "state.pth").is_file()))
        except OSError:
            return []

    @staticmethod
    def _check_meta(conn) -> int:
        """The store's schema version; StoreError if it is not ours or newer than this n2n-tui."""
        meta = dict(conn.execute("SELECT key, value FROM n2n_meta").fetchall())
        if meta.get("app") != APP:
            raise StoreError(f"not an n2n-tui session store (app = {meta.get('app')!r}); refusing to touch it")
        try:
            version = int(meta.get("schema", "0"))
        except ValueError:
            version = -1
        if version not in MIGRATIONS and version != SCHEMA_VERSION:
            raise StoreError(f"session store schema {meta.get('schema')!r}, this n2n-tui reads {SCHEMA_VERSION}")
        return version

    def _migrate(self, conn) -> None:
        """Bring an older store up to SCHEMA_VERSION, one version at a time, each in its own transaction."""
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = self._check_meta(conn)  # again under the lock: another process may have done it
                if version == SCHEMA_VERSION:
                    conn.execute("COMMIT")
                    return
                for stmt in MIGRATIONS[version]:
                    conn.execute(stmt)
                conn.execute("UPDATE n2n_meta SET value = ? WHERE key = 'schema'", (str(version + 1),))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

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

    def _why(self, e: sqlite3.Error, otherwise: str | None = None) -> str:
        """One line for a failed store operation: the cause a user can act on (a full disk, a read-only folder), not
        SQLite's wording; ``otherwise`` for anything else (default: the path and SQLite's message)."""
        code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF   # the primary code of an extended one
        text = str(e)
        if code == sqlite3.SQLITE_FULL or "disk is full" in text or (
                (code == sqlite3.SQLITE_IOERR or "disk I/O error" in text) and _disk_full(self.db_path.parent)):
            return f"no space left on device: {self.db_path}"
        if code == sqlite3.SQLITE_READONLY or "readonly database" in text:
            return f"{self.db_path}: read-only (the runs folder or its file system does not accept writes)"
        return otherwise or f"{self.db_path}: {text}"

    # ---------------------------------------------------------------------------------------- liveness (locks)
    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def _lock_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / ".lock"

    def acquire(self, run_id: str, tries: int = 5) -> None:
        """Hold the run's lock for as long as this process drives it; StoreError if another process does. A run
        folder made by an older n2n-tui (under the umask) is brought down to the store's modes first."""
        if run_id in self._held:
            return
        self._make_run_private(self.run_dir(run_id))
        path = self._lock_path(run_id)
        if not path.parent.exists():
            make_dir(path.parent, self.folder_mode, parents=True)
        try:
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT, self.file_mode)
        except OSError as e:
            why = str(e) if isinstance(e, SymlinkError) else f"{path}: cannot be opened ({e.strerror})"
            raise StoreError(why) from None
        if fcntl is not None:
            for i in range(tries):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if i == tries - 1:
                        os.close(fd)
                        raise StoreError(f"run {run_id} is being driven by another process") from None
                    time.sleep(0.05)  # a viewer may be probing the lock for a split second
        self._held[run_id] = fd

    def _make_run_private(self, folder: Path) -> None:
        try:
            entries = [folder, *folder.iterdir()] if folder.is_dir() else []
        except OSError:
            return
        for p in entries:
            try:
                st = p.lstat()
                mode = self.folder_mode if p == folder else self.file_mode
                if st.st_uid == os.getuid() and (p == folder or stat.S_ISREG(st.st_mode)) and \
                        stat.S_IMODE(st.st_mode) & ~mode:
                    os.chmod(p, mode)
            except OSError:
                pass

    def release(self, run_id: str) -> None:
        fd = self._held.pop(run_id, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock

    def _owner_alive(self, run_id: str, pid, host) -> bool:
        if run_id in self._held:
            return True
        if fcntl is None:
            if host != socket.gethostname() or not pid:
                return True  # cannot tell: assume alive
            try:
                os.kill(pid, 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        path = self._lock_path(run_id)
        if not path.exists():
            return False
        try:
            fd = open_nofollow(path, os.O_RDONLY)  # flock needs no write access: works in a read-only folder too
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _reap(self) -> None:
        """Runs marked running/paused whose process is gone are crashed (a read-only store only shows them so)."""
        if self._conn is None:
            return
        live = self._exec(f"SELECT id, pid, host, updated FROM runs WHERE state IN {sql_list(LIVE)}")
        if self.readonly:
            self._gone = {run_id for run_id, pid, host, _ in live if not self._owner_alive(run_id, pid, host)}
            return
        for run_id, pid, host, updated in live:
            if not self._owner_alive(run_id, pid, host):
                try:  # the dead runner's control socket: nobody answers there any more
                    (self.run_dir(run_id) / SOCKET_NAME).unlink()
                except OSError:
                    pass
                def work(conn, run_id=run_id, updated=updated):
                    cur = conn.execute(f"UPDATE runs SET state = 'crashed', ended = ? WHERE id = ? AND state IN "
                                       f"{sql_list(LIVE)}", (updated, run_id))
                    if cur.rowcount:
                        conn.execute("INSERT INTO events (run, time, kind, detail) VALUES (?, ?, 'crashed', ?)",
                                     (run_id, time.time(), "the process driving the run ended without closing it"))
                self._transaction(work)

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
        ended = None if state in ("pending", "running") else now
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
            d["trials"] = [r["id"] for r in self._trial_rows(d["id"])]
            if d["state"] in ("pending", "running") and not self._pid_alive(d["pid"], d["host"]):
                d["state"] = "crashed"
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

    def _trial_rows(self, sweep_id: str) -> list[dict]:
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
            d["state"], d["ended"] = "crashed", d["updated"]
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
        dims = [int(v) for v in shape.split(",")]
        noisy, denoised, clean = (decode_patches(b, dims) for b in blobs)
        return {"steps": steps, "step": step, "noisy": noisy, "denoised": denoised, "clean": clean}


def encode_patches(t) -> tuple[str, bytes]:
    """uint8 patches (torch or numpy) as (shape "K,3,H,W", raw bytes) for the samples table."""
    shape, raw = patch_bytes(t)
    return ",".join(map(str, shape)), raw


def decode_patches(blob: bytes, dims: list[int]):
    """The patches of ``encode_patches`` as a numpy uint8 array."""
    return patch_array(blob, dims)
