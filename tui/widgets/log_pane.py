"""``LogPane``: the run's log (``runner.log`` in its folder: what the runner and PyTorch's C++ code print, resume
notes, errors), tailed: ``follow(path)`` then ``poll()`` appends what was written since. Reading is bounded: only
the last ``TAIL_BYTES`` at first, and at most that much per poll. Long lines wrap at the pane's own width, and are
wrapped again when it changes (the pane starts hidden, so nothing is laid out before it is shown)."""
from __future__ import annotations

import os
from collections import deque

from textual.widgets import RichLog

TAIL_BYTES = 64 * 1024


class LogPane(RichLog):
    def __init__(self, **kwargs) -> None:
        # min_width 1: RichLog would otherwise lay lines out 78 cells wide and show a slice of them in a narrow pane
        super().__init__(max_lines=1000, wrap=True, min_width=1, markup=False, highlight=False, **kwargs)
        self._raw: deque[str] = deque(maxlen=1000)  # the lines as read, laid out again at each new width
        self.path: str | None = None
        self._offset = 0
        self.lines_read = 0
        self._partial = ""

    def follow(self, path: str | os.PathLike | None) -> None:
        self.path = str(path) if path else None
        self._offset = 0
        self._partial = ""
        self._raw.clear()
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
            self._raw.append(line.rstrip("\r"))
            if self.scrollable_content_region.width > 0:  # laid out now, or at the first size it gets
                self.write(self._raw[-1])
        self.lines_read += len(lines)
        return len(lines)

    def on_resize(self, event) -> None:
        """Shown, or resized: lay every line out again at the new width."""
        if self.scrollable_content_region.width > 0:
            self.clear()
            for line in self._raw:
                self.write(line)
