"""``LogPane``: the run's log (``runner.log`` in its folder: what the runner and PyTorch's C++ code print, resume
notes, errors), tailed: ``follow(path)`` then ``poll()`` appends what was written since. Reading is bounded: only
the last ``TAIL_BYTES`` at first, and at most that much per poll."""
from __future__ import annotations

import os

from textual.widgets import RichLog

TAIL_BYTES = 64 * 1024


class LogPane(RichLog):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=1000, wrap=True, markup=False, highlight=False, **kwargs)
        self.path: str | None = None
        self._offset = 0
        self.lines_read = 0
        self._partial = ""

    def follow(self, path: str | os.PathLike | None) -> None:
        self.path = str(path) if path else None
        self._offset = 0
        self._partial = ""
        self.clear()
        if self.path and os.path.exists(self.path):
            self._offset = max(0, os.path.getsize(self.path) - TAIL_BYTES)
        self.poll()

    def poll(self) -> int:
        """Append the lines written since the last poll; returns how many."""
        if not self.path:
            return 0
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:  # truncated or replaced: start again
                    self._offset = 0
                f.seek(self._offset)
                data = f.read(TAIL_BYTES)
                self._offset += len(data)
        except OSError:
            return 0
        if not data:
            return 0
        text = self._partial + data.decode("utf-8", errors="replace")
        *lines, self._partial = text.split("\n")
        for line in lines:
            self.write(line.rstrip("\r"))
        self.lines_read += len(lines)
        return len(lines)
