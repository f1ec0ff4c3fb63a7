"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``. A killed process leaves
either the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
