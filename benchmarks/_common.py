"""Shared bits of the benchmark scripts: a fixed data set, a plain training loop over ``train_step``, and the
measuring discipline every script follows: print the torch thread count and the load average before and after, and
time competing implementations interleaved, reporting the median over repeats (``interleaved``).

Thread count: torch's default unless a script's ``--threads N`` or the environment's ``N2N_THREADS`` says otherwise
(on a busy 2-core machine one thread can beat two: OpenMP threads wait for each other at every operation).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

if os.environ.get("N2N_THREADS", "auto").strip().lower() not in ("auto", "0", ""):  # a fixed count; auto: torch's
    torch.set_num_threads(int(os.environ["N2N_THREADS"]))


def tests_module(name: str):
    """A helper module of the test suite (``tests/NAME.py``, e.g. ``terminal``: its pseudo-terminal), loaded from its
    file: the test suite is not part of the installed package."""
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "tests" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def set_threads(n: int | None) -> int:
    """``n`` torch threads when n > 0, else keep the default (torch's own, or N2N_THREADS); returns the count."""
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def header(what: str = "") -> str:
    """One line naming the conditions of a measurement: torch, threads, CPU count, load average."""
    return (f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, "
            f"load average {load_avg()}" + (f"; {what}" if what else ""))


def core_to_core_ns(round_trips: int = 100_000) -> float | None:
    """Mean round trip (ns) of a cache line between the first two CPUs this process may run on, by
    ``c2c_latency.c`` (compiled once with the system's ``cc``); None without a C compiler or a second CPU. On a VM
    it says where the host put the virtual CPUs: on the 2-core development machine it read 55-130 ns at some
    times and 320-420 ns at others (different dies; see probe_conv_modes.py). Call it while this process's own
    threads are idle."""
    cpus = sorted(os.sched_getaffinity(0))
    cc = shutil.which("cc") or shutil.which("gcc")
    if len(cpus) < 2 or cc is None:
        return None
    src = Path(__file__).with_name("c2c_latency.c")
    exe = Path(tempfile.gettempdir()) / f"n2n-c2c-{hashlib.sha1(src.read_bytes()).hexdigest()[:12]}"
    try:
        if not exe.exists():
            tmp = exe.with_suffix(f".{os.getpid()}")
            subprocess.run([cc, "-O2", "-pthread", str(src), "-o", str(tmp)], check=True, capture_output=True)
            os.replace(tmp, exe)
        time.sleep(0.3)                                      # let OpenMP threads stop spinning
        out = subprocess.run([str(exe), str(cpus[0]), str(cpus[1]), str(round_trips)], check=True,
                             capture_output=True, text=True, timeout=30)
        return float(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def print_core_to_core(before: float | None) -> None:
    """At the end of a benchmark: the round trip measured at its start (``before``) and now, if it was measured."""
    if before is not None:
        print(f"core-to-core round trip {before:.0f} ns before, {core_to_core_ns() or float('nan'):.0f} ns after")


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Median wall time (s) of each function in ``fns`` (name -> callable), run in turns: every repeat runs each
    once, in an order rotated from repeat to repeat, so a change in load hits all of them alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def wait_quiet(limit: float, timeout: float = 600.0) -> None:
    """Wait until the 1-minute load average is below ``limit`` (at most ``timeout`` seconds; says so if not)."""
    def load() -> float:
        return float(load_avg()) if load_avg() != "?" else 0.0

    t0 = time.time()
    while load() >= limit and time.time() - t0 < timeout:
        time.sleep(5)
    state = "quiet" if load() < limit else "NOT quiet (gave up waiting)"
    print(f"load average {load_avg()} after waiting {time.time() - t0:.0f} s: {state}", flush=True)


def load(noise: str, n_train: int, n_val: int, seed: int = 0):
    from engine.data import load_data

    return load_data("sample", noise=noise, seed=seed, n_train=n_train, n_val=n_val)


def train_steps(step_fn, inputs: torch.Tensor, targets: torch.Tensor, steps: int, batch: int, seed: int = 0) -> float:
    """``steps`` calls of ``step_fn(x, y)`` on shuffled batches; returns images per second."""
    g = torch.Generator().manual_seed(seed)
    n = len(inputs)
    order = torch.randperm(n, generator=g)
    pos, t0 = 0, time.perf_counter()
    for _ in range(steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + batch]
        pos += batch
        step_fn(inputs[idx], targets[idx])
    return steps * batch / (time.perf_counter() - t0)


def load_avg() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def epoch_speed(models: dict, repeats: int, steps: int, seed: int = 0) -> dict:
    """Median images/s of ``Model.train_step`` for each model in ``models`` (name -> Model), measured in
    ``repeats`` interleaved windows of ``steps`` steps at the model's batch size on random uint8 32x32 pairs."""
    g = torch.Generator().manual_seed(seed)
    data = {}
    for name, m in models.items():
        bs = m.batch_size
        data[name] = ((torch.rand(8 * bs, 3, 32, 32, generator=g) * 255).to(torch.uint8),
                      (torch.rand(8 * bs, 3, 32, 32, generator=g) * 255).to(torch.uint8))

    def window(name):
        m, (x, y) = models[name], data[name]
        bs = m.batch_size

        def run():
            for i in range(steps):
                j = i % 8
                m.train_step(x[j * bs:(j + 1) * bs], y[j * bs:(j + 1) * bs])
        return run

    t = interleaved({name: window(name) for name in models}, repeats)
    return {name: steps * models[name].batch_size / t[name] for name in models}
