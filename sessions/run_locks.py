"""Which process drives a run: one ``.lock`` file per run folder that the owning process holds with ``flock`` while
it lives (``RunLocks``, a part of ``sessions.store.Store``). A run still marked running or paused whose lock can be
taken belongs to a process that is gone (killed, crashed): it reads ``crashed`` from then on."""
from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

from engine.fileio import SymlinkError, make_dir, open_nofollow
from engine.states import LIVE, sql_list

from .protocol import SOCKET_NAME
from .store_file import StoreError

try:
    import fcntl
except ImportError:  # not POSIX: fall back to checking the owner's pid
    fcntl = None


class RunLocks:
    """Run ownership (a part of ``Store``: it uses the store's ``_held``, ``run_dir``, ``_exec``, ``_transaction``)."""

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
