"""What the machine is doing while a run trains: host CPU %, the process's memory, the GPU's load and memory, free
disk where the run writes, torch's thread count and the cores other processes keep busy (``engine.threads``).
``SystemMonitor`` samples it every ``SYSTEM_SECONDS`` in a thread of the run's own process and hands a
``SystemEvent`` to the trainer's sinks (the store records it, viewers show it). ``psutil`` reads the host;
torch's own CUDA queries (and NVML through ``pynvml`` / ``nvidia-ml-py`` when installed, for utilisation) the GPU.
"""
from __future__ import annotations

import os
import shutil
import threading

from .events import SystemEvent
from .threads import CpuWatch

SYSTEM_SECONDS = float(os.environ.get("N2N_SYSTEM_SECONDS", "5"))  # 0 turns sampling off (benchmarks)


def _psutil():
    """psutil is a dependency; a broken or missing install costs the cpu/rss numbers, never the run."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def sample(run_id: str, step: int, folder: str | os.PathLike, device: str = "cpu", threads: int | None = None,
           busy: float | None = None) -> SystemEvent:
    psutil = _psutil()
    cpu = rss = None
    if psutil is not None:
        try:
            cpu = psutil.cpu_percent(interval=None)  # since the previous call: the first one reads 0
        except Exception:
            pass
        try:
            rss = float(psutil.Process().memory_info().rss)
        except Exception:
            pass
    try:
        disk = float(shutil.disk_usage(folder).free)
    except OSError:
        disk = None
    gpu_util = gpu_mem = None
    if str(device).startswith("cuda"):
        gpu_util, gpu_mem = _gpu(device)
    return SystemEvent(run_id, step=step, cpu=cpu, rss=rss, gpu_util=gpu_util, gpu_mem=gpu_mem, disk_free=disk,
                       threads=threads, busy=busy)


def _gpu(device: str) -> tuple[float | None, float | None]:
    try:
        import torch

        index = torch.device(device).index or 0
        mem = float(torch.cuda.memory_reserved(index))
    except Exception:
        return None, None
    try:
        util = float(torch.cuda.utilization(index))  # NVML underneath; absent without it
    except Exception:
        util = None
    return util, mem


class SystemMonitor:
    """Samples every ``interval`` seconds while ``trainer`` is alive (and at its start)."""

    def __init__(self, trainer, folder: str | os.PathLike, interval: float = SYSTEM_SECONDS):
        self.trainer, self.folder, self.interval = trainer, folder, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "SystemMonitor":
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="system-monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        psutil = _psutil()
        if psutil is not None:
            psutil.cpu_percent(interval=None)  # start the first interval
        t = self.trainer
        others = CpuWatch()  # its own look, so a fixed thread count also hears about a busy machine
        while not self._stop.wait(self.interval):
            if getattr(t, "_done", False):
                return
            if getattr(t, "_started", False):
                gov = getattr(t, "threads", None)
                t.publish(sample(t.run_id, t.step, self.folder, t.device, getattr(gov, "n", None), others.sample()))
