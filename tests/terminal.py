"""A real terminal for tests: ``n2n-tui`` started on a pseudo-terminal (as under tmux or ssh), its screen output
drained by a thread (an undrained terminal would block the app), keys written to it."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time


class Terminal:
    def __init__(self, *args: str, cols: int = 80, rows: int = 24, env: dict | None = None):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        e = dict(os.environ, OMP_NUM_THREADS="1", TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        e.pop("N2N_RUNS_DIR", None)
        e.update(env or {})
        # its own session with the pty as controlling terminal: like a shell in a terminal window
        self.proc = subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=e, start_new_session=True, close_fds=True)
        os.close(slave)
        self.output = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def wait_for_output(self, text: str, timeout: float = 60.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text.encode() in self.output:
                return True
            time.sleep(0.05)
        return False

    def text(self, last: int = 2000) -> str:
        """The end of what the app wrote, escape sequences blanked: for assertion messages."""
        import re

        raw = re.sub(rb"\x1b\[[0-9;?]*[ -/]*[@-~]", b" ", bytes(self.output[-4 * last:]))
        return re.sub(r"\s+", " ", raw.decode("utf-8", "replace"))[-last:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        try:
            os.close(self.master)
        except OSError:
            pass
