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
    def __init__(self, *args: str, cols: int = 80, rows: int = 24, env: dict | None = None, cwd: str | None = None):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        e = dict(os.environ, OMP_NUM_THREADS="1", TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        e.pop("N2N_RUNS_DIR", None)
        e.update(env or {})

        def controlling_terminal():  # its own session with the pty as its controlling terminal, as under a shell:
            os.setsid()              # closing the terminal then hangs it up (SIGHUP, /dev/tty gone, EIO)
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=e, preexec_fn=controlling_terminal, close_fds=True, cwd=cwd)
        os.close(slave)
        self.output = bytearray()
        self._stopping = False
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        import select

        while not self._stopping:  # (never blocked in read: a read in progress would keep the terminal open)
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self.master, 65536)
            except (OSError, ValueError):
                return
            if not data:
                return
            self.output += data

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def expect(self, text: str, timeout: float = 60.0) -> bool:
        """True once the app has written ``text`` (escape sequences included), False after ``timeout`` seconds."""
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

    def hang_up(self) -> None:
        """Close the terminal as a dropped SSH connection or a killed tmux session does; the process is left alone."""
        self._stopping = True
        self._reader.join(5)
        try:
            os.close(self.master)
        except OSError:
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.hang_up()
