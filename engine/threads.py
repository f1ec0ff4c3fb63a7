"""How many CPU threads torch uses, on a machine other people use too: ``--threads N|auto`` (default ``auto``, or
``$N2N_THREADS``).

Why it matters: torch starts one thread per core, and every parallel operation waits for its slowest thread, so one
core busy with someone else's job makes every step wait for a descheduled thread: on a 2-core machine with one other
busy process, a run at 2 threads was 3x slower than at 1 (75 against 243 images/s).

``auto`` starts from the CPUs this process may run on (``os.sched_getaffinity``, and ``$OMP_NUM_THREADS`` when a job
scheduler or Ray set it) less the cores other processes keep busy right now (``CpuWatch``: the machine's busy time
less this process's own, from /proc via psutil), and keeps watching while the run trains (``ThreadGovernor``): every
few seconds it looks again, and when the count it would pick now differs, or a step got much slower than it was at
this count, it probes: it times a few steps at the count it has, then a few at the other (training goes on, only the
thread count differs), and keeps whichever trained faster. A count it tried and dropped is not tried again for a
while (doubling back-off), so a noisy machine does not make it flap. On a quiet machine nothing is probed: the count
it would pick is the one it has. A fixed ``N`` is used as given.

In the live settings channel, which carries numbers, ``auto`` is 0.
"""
from __future__ import annotations

import os
import statistics
import time
from collections import deque

AUTO = 0                 # "auto" where a number is needed (live settings, state files)
MAX_THREADS = 1024
CHECK_SECONDS = 5.0      # how often auto looks at the machine again
PROBE_STEPS = 3          # steps timed at a candidate count (after one to let the thread pool settle) ...
PROBE_SECONDS = 0.3      # ... and at least this long
MARGIN = 0.05            # a candidate must train this much faster to be kept
SLOWER = 1.3             # a step this much slower than the best seen at the current count: try one thread less
BACKOFF = (30.0, 300.0)  # seconds before a dropped candidate is tried again: first, then doubling up to the last


def parse_threads(value) -> int:
    """``auto`` (or 0) -> AUTO, a positive integer -> itself; ValueError naming the problem otherwise."""
    text = str(value).strip().lower()
    if text == "auto":
        return AUTO
    try:
        n = int(text)
        if str(n) != text.lstrip("+"):
            raise ValueError
    except ValueError:
        raise ValueError(f"threads must be a positive integer or auto, got {value!r}") from None
    if not 0 <= n <= MAX_THREADS:
        raise ValueError(f"threads must be auto or 1-{MAX_THREADS}, got {value!r}")
    return n


def threads_text(setting: int) -> str:
    return "auto" if setting == AUTO else str(setting)


def threads_value(value) -> int:
    """``parse_threads`` that also takes the live settings channel's numbers (2.0 -> 2, 0.0 -> auto)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return parse_threads(value)


def default_setting() -> str:
    """What ``--threads`` means when it is not given: ``$N2N_THREADS`` (checked), else auto."""
    env = os.environ.get("N2N_THREADS", "").strip()
    if not env:
        return "auto"
    try:
        parse_threads(env)
    except ValueError as e:
        raise ValueError(f"$N2N_THREADS: {e}") from None
    return env


def cpus() -> int:
    """The CPUs this process may use: its affinity, capped by $OMP_NUM_THREADS when something set it."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


class CpuWatch:
    """Cores other processes keep busy on this process's CPUs, between two calls of ``sample`` (non-blocking): the
    busy time of those CPUs (steal included: a hypervisor's other guests count as others) less this process's own."""

    def __init__(self):
        try:
            import psutil
        except ImportError:
            psutil = None
        self._psutil = psutil
        self._last = self._read()

    def _read(self):
        if self._psutil is None:
            return None
        try:
            mine = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            mine = None
        try:
            per_cpu = self._psutil.cpu_times(percpu=True)
            own = self._psutil.Process().cpu_times()
        except Exception:
            return None
        cpus_ = [per_cpu[i] for i in mine if i < len(per_cpu)] if mine else per_cpu
        total = sum(sum(c) - getattr(c, "guest", 0.0) - getattr(c, "guest_nice", 0.0) for c in cpus_)
        idle = sum(c.idle + getattr(c, "iowait", 0.0) for c in cpus_)
        return time.monotonic(), total - idle, total, own.user + own.system, len(cpus_)

    def sample(self) -> float | None:
        """Cores busy elsewhere since the last call (None if it cannot tell, or too little time passed)."""
        now = self._read()
        last, self._last = self._last, now if now is not None else self._last
        if now is None or last is None or now[0] - last[0] < 0.05:
            return None
        wall = now[0] - last[0]
        busy_total = (now[1] - last[1]) / max(now[2] - last[2], 1e-9) * now[4]   # in cores
        own = (now[3] - last[3]) / wall
        return max(0.0, busy_total - own)


def pick(available: int, busy: float | None) -> int:
    """The thread count for ``available`` CPUs when ``busy`` cores are busy elsewhere."""
    if busy is None:
        return available
    return max(1, min(available, round(available - busy)))


def set_torch_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def use_threads(setting, wait: float = 0.25) -> int:
    """For a one-shot command (eval, denoise, data make): torch's thread count from ``setting`` (auto: from a short
    look at the machine); returns it."""
    s = parse_threads(setting)
    if s == AUTO:
        watch = CpuWatch()
        time.sleep(wait)
        s = pick(cpus(), watch.sample())
    set_torch_threads(s)
    return s


class ThreadGovernor:
    """A run's thread count, between its steps: fixed, or ``auto`` (see the module docstring). ``after_step`` is
    called with each step's seconds per image and returns a sentence when it changed the count (the run's event)."""

    def __init__(self, setting: int = AUTO, *, set_threads=set_torch_threads, clock=time.monotonic, watch=None,
                 available=None):
        self.setting = setting
        self._set_threads, self._clock = set_threads, clock
        self._watch = watch if watch is not None else CpuWatch()
        self._available = available or cpus
        self.n = setting or 1
        self.busy: float | None = None
        self._times: deque[float] = deque(maxlen=20)    # seconds per image at the current count, since it was set
        self._best: dict[int, float] = {}               # the best median seen at each count
        self._probe: dict | None = None
        self._cooldown: dict[int, tuple[float, float]] = {}  # count -> (not before, back-off)
        self._next_check = 0.0

    def start(self) -> str:
        """Set the first count; a sentence saying what and why."""
        if self.setting != AUTO:
            self._use(self.setting)
            return f"{self.n} (as set)"
        avail = self._available()
        self.busy = self._watch.sample()
        self._use(pick(avail, self.busy))
        self._next_check = self._clock() + CHECK_SECONDS
        return f"auto: {self.n} of {avail} CPUs" + self._why()

    def set_setting(self, setting: int) -> str:
        """A new setting by hand (``ctl set threads``, ``h``); a sentence for the event."""
        old = threads_text(self.setting)
        self.setting, self._probe, self._cooldown = setting, None, {}
        if setting != AUTO:
            self._use(setting)
            return f"threads {old} -> {setting}"
        self.busy = self._watch.sample()
        self._use(pick(self._available(), self.busy))
        self._next_check = self._clock() + CHECK_SECONDS
        return f"threads {old} -> auto ({self.n}{self._why()})"

    def _why(self) -> str:
        if self.busy is None or self.busy < 0.5:
            return ""
        return f", {self.busy:.1f} core{'s' if self.busy >= 1.5 else ''} busy elsewhere"

    def _use(self, n: int) -> None:
        if n != self.n:
            self._times.clear()
        self.n = n
        self._set_threads(n)

    def after_step(self, sec_per_img: float) -> str | None:
        if self.setting != AUTO or not sec_per_img > 0:
            return None
        now = self._clock()
        if self._probe is not None:
            return self._probe_step(sec_per_img, now)
        self._times.append(sec_per_img)
        if now < self._next_check or len(self._times) < PROBE_STEPS:
            return None
        self._next_check = now + CHECK_SECONDS
        current = statistics.median(self._times)
        self._best[self.n] = min(self._best.get(self.n, current), current)
        busy = self._watch.sample()
        if busy is not None:
            self.busy = busy
        target = pick(self._available(), self.busy)
        if target == self.n and self.n > 1 and current > SLOWER * self._best[self.n]:
            target = self.n - 1  # slower than it was here, though the machine looks the same: try one less
        if target != self.n and now >= self._cooldown.get(target, (0.0, 0.0))[0]:
            # a few steps at this count first, then as many at the other: both measured on the machine as it is now
            self._probe = {"from": self.n, "to": target, "phase": "ref", "ref": [], "times": [], "skip": 0,
                           "since": now}
        return None

    def _probe_step(self, sec_per_img: float, now: float) -> str | None:
        p = self._probe
        if p["skip"]:   # the first step at a new count: its thread pool settles
            p["skip"] -= 1
            p["since"] = now
            return None
        p["times"].append(sec_per_img)
        if len(p["times"]) < PROBE_STEPS or now - p["since"] < PROBE_SECONDS:
            return None
        if p["phase"] == "ref":
            p.update(phase="try", ref=p["times"], times=[], skip=1, since=now)
            self._set_threads(p["to"])
            return None
        self._probe = None
        ref, tried = statistics.median(p["ref"]), statistics.median(p["times"])
        if tried < (1 - MARGIN) * ref:
            old = p["from"]
            self._use(p["to"])
            self._best[self.n] = tried
            self._times.extend(p["times"])
            self._cooldown.pop(self.n, None)
            return f"{old} -> {self.n}: {1 / ref:.0f} -> {1 / tried:.0f} img/s" + self._why()
        _, backoff = self._cooldown.get(p["to"], (0.0, BACKOFF[0] / 2))
        backoff = min(BACKOFF[1], backoff * 2)
        self._cooldown[p["to"]] = (now + backoff, backoff)
        self._set_threads(p["from"])   # back to the count it had
        return None

    @property
    def probing(self) -> bool:
        return self._probe is not None
