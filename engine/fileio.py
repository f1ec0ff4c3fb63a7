"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``. A killed process leaves
either the old file or the new one, never half of one.

Targets are checked first (``check_target``): only a regular file, or a free name in an existing folder, is ever
replaced, never a device, a FIFO, a socket or a folder. Failures come back as ``WriteError`` with one line that names
the target and the reason ("no space left on device: PATH"), never the temporary file's name.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EFBIG: "file too large"}


class WriteError(OSError):
    """A file could not be written; the message names the target, and the target is as it was."""

    def __str__(self) -> str:  # the message alone, not OSError's "[Errno 28] ..."
        return self.strerror or super().__str__()


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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    path = check_target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary readable files
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into memory: a failed write then raises a plain OSError (disk full), not a zip-writer
    RuntimeError."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(path, torch_bytes(obj))
