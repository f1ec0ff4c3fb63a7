"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``. A killed process leaves
either the old file or the new one, never half of one.

Targets are checked first (``check_target``): only a regular file, or a free name in an existing folder, is ever
replaced, never a device, a FIFO, a socket or a folder. Failures come back as ``WriteError`` with one line that names
the target and the reason ("no space left on device: PATH"), never the temporary file's name.

Privacy on a shared machine: what n2n-tui writes under a runs folder (run folders, the session store, checkpoints,
logs) is the owner's alone, whatever the umask: folders 0700, files 0600 (``run_modes``). An owner who shares the
runs folder with a group on purpose (group-writable or setgid, and not world-writable like /tmp) gives the group
read access: folders 0750, files 0640. Files there are opened without following symbolic links (``open_nofollow``,
``read_nofollow``): a link planted in a run folder is refused, not written or read through. Files the user asked
for elsewhere (an exported ``bestmodel.pth``, figures) follow the umask like any other program's.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

from .errors import N2NError, described

_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EFBIG: "file too large"}


class WriteError(N2NError, OSError):
    """A file could not be written; the message names the target, and the target is as it was."""

    def __str__(self) -> str:  # the message alone, not OSError's "[Errno 28] ..."
        return self.strerror or super().__str__()


def umask() -> int:
    """This process's umask (read from /proc where it can be: setting it to read it races with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def run_modes(runs_root: str | os.PathLike) -> tuple[int, int]:
    """(folder mode, file mode) for what n2n-tui writes under ``runs_root``: (0o700, 0o600), or (0o750, 0o640) when
    its owner shares the folder with a group on purpose (setgid or group-writable, not world-writable)."""
    try:
        mode = os.stat(runs_root).st_mode
    except OSError:
        return 0o700, 0o600
    shared = mode & (stat.S_ISGID | stat.S_IWGRP) and not mode & stat.S_IWOTH
    return (0o750, 0o640) if shared else (0o700, 0o600)


def make_dir(path: str | os.PathLike, mode: int, parents: bool = False) -> Path:
    """``mkdir`` with exactly ``mode`` (not ``mode`` less the umask); FileExistsError if it exists."""
    path = Path(path)
    if parents and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=mode)
    os.chmod(path, mode)
    return path


class SymlinkError(N2NError, OSError):
    """A file n2n-tui keeps for itself is a symbolic link: refused, never followed."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def open_nofollow(path: str | os.PathLike, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (SymlinkError, one line); a file it creates gets exactly
    ``mode`` (not ``mode`` less the umask), and an existing one of ours is brought down to it."""
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SymlinkError(errno.ELOOP, f"{path}: is a symbolic link; n2n-tui does not follow links in its run "
                                            "folders (move it away)") from None
        raise
    if flags & os.O_CREAT:
        try:
            st = os.fstat(fd)
            if st.st_uid == os.getuid() and (not existed or stat.S_IMODE(st.st_mode) & ~mode):
                os.fchmod(fd, mode)
        except OSError:
            pass
    return fd


def read_nofollow(path: str | os.PathLike) -> bytes:
    """The bytes of a file n2n-tui keeps for itself, refusing a symbolic link (SymlinkError)."""
    fd = open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


SYSTEM_TREES = ("/proc", "/sys", "/dev")   # kernel interfaces: never a target, whatever stat says of them


def kernel_interface(path: str | os.PathLike) -> str | None:
    """The real path of ``path`` when it lies under /proc, /sys or /dev (never a place for our files), else None."""
    real = os.path.realpath(path)
    return real if any(real == top or real.startswith(top + "/") for top in SYSTEM_TREES) else None


def check_target(path: str | os.PathLike, what: str = "target") -> Path:
    """``path`` as a Path if a file may be written there: it is a regular file or does not exist yet, in an existing
    folder. Raises WriteError naming the problem otherwise."""
    if str(path).strip() == "":
        raise WriteError(errno.EINVAL, f"{what}: empty path")
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise WriteError(e.errno, f"{path}: {e.strerror.lower()}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise WriteError(errno.EISDIR, f"{path}: is a directory; give a file path, e.g. {path / 'bestmodel.pth'}")
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise WriteError(errno.EINVAL, f"{path}: is {kind}, not a regular file; refusing to replace it")
    real = kernel_interface(path)
    if real:
        raise WriteError(errno.EINVAL, f"{path}: a kernel interface ({real}), not a place for files; refusing it")
    if not path.parent.is_dir():
        raise WriteError(errno.ENOENT, f"{path}: folder {path.parent} does not exist")
    return path


def write_error(e: BaseException, path: str | os.PathLike) -> WriteError:
    """``e`` (an OSError from writing ``path`` or its temporary file) as a WriteError that names ``path``."""
    if isinstance(e, WriteError):
        return e
    code = getattr(e, "errno", None)
    reason = _REASONS.get(code) or (getattr(e, "strerror", None) or str(e) or type(e).__name__).lower()
    return WriteError(code or errno.EIO, f"{reason}: {path}")


STALE_TEMP_SECONDS = 3600   # a temporary file of the old naming (no pid) this old is a leftover


def temp_beside(path: Path) -> tuple[int, str]:
    """``mkstemp`` next to ``path`` for an atomic write of it, named ``.NAME.PID-XXXX.tmp``; leftovers of writers
    that were killed mid-write (their pid gone) are removed first, so they never pile up."""
    remove_stale_temps(path)
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove our own temporary files of ``path`` left by a writer killed mid-write: ``.NAME.PID-*.tmp`` whose
    process is gone, and ``.NAME.*.tmp`` of the older naming (no pid) over an hour old. Returns what it removed."""
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        middle = tmp.name[len(path.name) + 2:-len(".tmp")]
        pid, dash, _ = middle.partition("-")
        try:
            if dash and pid.isdigit():
                if pid_alive(int(pid)):
                    continue
            elif time.time() - tmp.lstat().st_mtime < STALE_TEMP_SECONDS:
                continue
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], mode: int | None = None) -> Path:
    """Write ``path`` through ``write(f)``, atomically. The file gets ``mode``, or when None what the umask gives a
    new file (0644 under the usual 022)."""
    path = check_target(path)
    try:
        fd, tmp = temp_beside(path)
    except OSError as e:
        raise write_error(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask() if mode is None else mode)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise write_error(e, path) from None
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    return atomic_write(path, lambda f: f.write(data), mode)


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into memory: a failed write then raises a plain OSError (disk full), not a zip-writer
    RuntimeError."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_torch_save(obj: Any, path: str | os.PathLike, mode: int | None = None) -> Path:
    return atomic_write_bytes(path, torch_bytes(obj), mode)


def torch_load_problem(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words (not PyTorch's migration advice)."""
    text = str(e).strip()
    if "Weights only load failed" in text:
        return "it holds Python objects besides tensors and plain values, so n2n-tui did not write it; refused unread"
    return described(e, 160)
