"""Ray for sweeps: embedded local Ray, or an existing cluster reached with ``--address``; what a sweep may ask of
it (``check_resources``). Ray is imported lazily: without it everything else works, and ``sweep`` says how to
install it."""
from __future__ import annotations

import logging
import os
import socket
import threading

from engine.errors import first_line

from .sweep_spec import SpecError, SweepSpec

# Tune warns about frequent experiment snapshots when trials report often (every evaluation): that is our design.
# Its newer console output prints a configuration table even at verbose=0: our stdout is the sweep's own (--json)
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the store records the trials, not Tune's files
INSTALL = "sweeps need Ray Tune: pip install 'n2n-tui[sweep]' (or pip install 'ray[tune]')"
ADDRESS_TIMEOUT = 25.0  # seconds to reach an existing cluster before saying it cannot be reached
# Ray's notices when it starts (2.59 on: "Token authentication is enabled for this Ray cluster..." each time it
# starts a local cluster): they went to the terminal just before the sweep view took it over, and were the first
# thing seen after it closed. They are kept here for the sweep's event log; authentication itself is untouched.
NOTICE_LOGGERS = ("ray._private.authentication.authentication_token_setup",)
NOTES: list[str] = []


class _KeepNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True  # an error still says itself where Ray says it
        NOTES.append(record.getMessage())
        return False


def _keep_ray_notices() -> None:
    for name in NOTICE_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _KeepNotes) for f in log.filters):
            log.addFilter(_KeepNotes())


def connect_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Embedded local Ray (nothing to start), or the cluster at ``address`` (``RAY_ADDRESS``); an address nobody
    answers at is a one-line error within ``ADDRESS_TIMEOUT`` seconds instead of Ray's endless retries."""
    try:
        import ray
    except ImportError:
        raise SpecError(INSTALL) from None
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    _keep_ray_notices()
    if address in (None, "local"):
        # "local", not None: given None, Ray joins whatever cluster /tmp/ray/ray_current_cluster names, on a shared
        # machine someone else's (and refuses num_cpus there)
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
        return
    if address != "auto" and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SpecError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), auto, local or "
                            "ray://HOST:PORT")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=min(10.0, ADDRESS_TIMEOUT)).close()
        except (OSError, ValueError) as e:
            raise SpecError(f"--address {address}: no Ray cluster answers there "
                            f"({getattr(e, 'strerror', None) or e})") from None
    done, error = threading.Event(), []

    def init() -> None:
        try:
            ray.init(address=address, **kwargs)
        except Exception as e:  # noqa: BLE001  (reported below)
            error.append(e)
        done.set()

    threading.Thread(target=init, daemon=True, name="ray-init").start()
    if not done.wait(ADDRESS_TIMEOUT):
        raise SpecError(f"--address {address}: the Ray cluster did not answer within {ADDRESS_TIMEOUT:g} s")
    if error:
        raise SpecError(f"--address {address}: {first_line(error[0])}")


def _local(address: str | None) -> bool:
    return (address or os.environ.get("RAY_ADDRESS") or "local") == "local"


def check_resources(spec: SweepSpec, address: str | None, connected: bool = False) -> None:
    """SpecError when no trial could ever start: more CPUs or GPUs per trial than there are (Tune would wait for
    them for ever). For embedded local Ray, from this machine before Ray starts; for a cluster, from what it says it
    has, once ``connected``."""
    if _local(address) == connected:  # local: checked before connecting; a cluster: only once connected
        return
    if _local(address):
        import torch

        have = {"CPU": len(os.sched_getaffinity(0)), "GPU": torch.cuda.device_count()}
    else:
        import ray

        have = ray.cluster_resources()
    where = "this machine has" if _local(address) else "the Ray cluster has"
    for key, need in (("CPU", spec.cpus_per_trial), ("GPU", spec.gpus_per_trial)):
        if need > have.get(key, 0):
            raise SpecError(f"{key.lower()}s_per_trial = {need:g}: {where} {have.get(key, 0):g} {key}"
                            f"{'s' if have.get(key, 0) != 1 else ''}, so no trial could ever start")


def ray_session() -> str | None:
    """The folder of the Ray session this process joined (its processes carry it in their command lines)."""
    try:
        import ray

        return ray._private.worker._global_node.get_session_dir_path()
    except Exception:
        return None


def tune_space(space: dict) -> dict:
    """The spec's space as Ray Tune samplers (randint's high end is included, as in the spec)."""
    from ray import tune

    out = {}
    for k, (kind, args) in space.items():
        if kind == "loguniform":
            out[k] = tune.loguniform(*args)
        elif kind == "uniform":
            out[k] = tune.uniform(*args)
        elif kind == "randint":
            out[k] = tune.randint(args[0], args[1] + 1)
        elif kind == "choice":
            out[k] = tune.choice(args)
        else:
            out[k] = tune.grid_search(args)
    return out
