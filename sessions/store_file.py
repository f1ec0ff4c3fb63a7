"""The database file of the session store: its schema and the migrations from older versions, and opening it
safely (``StoreFile``, a part of ``sessions.store.Store``): a corrupt or foreign database is refused and never written,
a read-only view never writes, the file and its -wal/-shm are made private before SQLite opens them."""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

from engine.errors import N2NError
from engine.fileio import SymlinkError, open_nofollow

DB_NAME = "sessions.sqlite"
APP = "n2n-tui"
SCHEMA_VERSION = 7
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
               "started", "ended", "updated", "pid", "host", "active", "tag", "psnr_noisy", "config")

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
# psnr_noisy: the PSNR of the run's noisy validation input against its targets, the baseline its curve must beat
SCHEMA = SCHEMA.replace("active REAL NOT NULL DEFAULT 0\n);",
                        "active REAL NOT NULL DEFAULT 0,\n    tag TEXT NOT NULL DEFAULT '',\n    psnr_noisy REAL\n);")
SWEEP_COLUMNS = ("id", "spec", "storage", "state", "best_run", "best_psnr", "started", "ended", "updated", "pid",
                 "host")

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
    6: ["ALTER TABLE runs ADD COLUMN psnr_noisy REAL"],  # NULL for runs recorded before: the report recomputes it
}


class StoreError(N2NError, ValueError):
    """The store cannot be used as asked (corrupt or foreign database, unknown run, ...)."""


class OlderStoreError(StoreError):
    """A store of an older schema met by a read-only view (which may upgrade it first where the folder allows)."""


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (next to) no room left: SQLite reports a full disk met while
    creating its -wal or -shm file as a plain I/O error."""
    try:
        return shutil.disk_usage(folder).free < 64 * 1024
    except OSError:
        return False


class StoreFile:
    """Opening ``self.db_path`` (a part of ``Store``: it uses the store's ``root``, ``db_path`` and ``file_mode``)."""

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
                    raise OlderStoreError(f"{db}: an older session store that a read-only view cannot upgrade; open "
                                          "it once from a writable folder (e.g. n2n-tui train)")
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
