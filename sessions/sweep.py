"""Sweeps: many runs of one search space, searched by Ray Tune (embedded local Ray by default, an existing cluster
with ``--address``); we write no scheduler of our own: ASHA (or none) from Tune, search spaces from Tune's samplers.

A sweep is described by a TOML file (``load_spec``, validated before Ray starts: every bad key gets one line naming
it). Each trial runs the ordinary ``Trainer`` in a Ray worker (``trial_main``) and reports every evaluation to Tune:
its PSNR (what ASHA judges), the loss points and events since the last report, and, as a Tune checkpoint, the best
weights and the latest full training state. The *driver* (``SweepDriver``, in the process that started the sweep)
turns those reports into an ordinary run in the sessions store per trial (``Recorder``, best weights copied into the
run folder), so trials on other machines never touch the SQLite file. Ray is imported lazily: without it everything
else works, and ``sweep`` says how to install it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from engine.config import ConfigError, RunConfig, model_options
from engine.fileio import atomic_write_bytes, kernel_interface, make_dir
from engine.errors import N2NError, described, first_line

SPEC_KEYS = {"trials", "concurrency", "scheduler", "metric", "cpus_per_trial", "gpus_per_trial", "storage", "space",
             "name", "grace"}
SAMPLERS = ("loguniform", "uniform", "randint", "choice", "grid")
SCHEDULERS = ("asha", "none")
METRICS = ("psnr", "best_psnr")
# Tune warns about frequent experiment snapshots when trials report often (every evaluation): that is our design.
# Its newer console output prints a configuration table even at verbose=0: our stdout is the sweep's own (--json)
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the store records the trials, not Tune's files
INSTALL = "sweeps need Ray Tune: pip install 'n2n-tui[sweep]' (or pip install 'ray[tune]')"
ADDRESS_TIMEOUT = 25.0  # seconds to reach an existing cluster before saying it cannot be reached


class SpecError(N2NError, ValueError):
    """A sweep spec that cannot run; the message names the key."""


@dataclass
class SweepSpec:
    fixed: dict                       # RunConfig fields every trial shares
    space: dict                       # searched field -> (sampler, args)
    trials: int = 8
    concurrency: int = 1
    scheduler: str = "asha"
    metric: str = "psnr"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    storage: str | None = None        # where Tune keeps trials' checkpoints: a path every node can reach
    grace: float = 0.25               # ASHA: the share of its training a trial gets before it can be stopped
    name: str = ""

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepSpec":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})

    def grid_size(self) -> int:
        return math.prod(len(args) for kind, args in self.space.values() if kind == "grid")

    def samples(self) -> int:
        """Tune's num_samples: each sample runs the whole grid, so ``trials`` counts trials, grid included (at least
        one pass over the grid)."""
        return max(1, self.trials // self.grid_size())

    def trial_count(self) -> int:
        return self.samples() * self.grid_size()

    def trial_config(self, params: dict) -> RunConfig:
        """The RunConfig of a trial with sampled ``params`` (model options go into ``model``)."""
        values, model = dict(self.fixed), dict(self.fixed.get("model") or {})
        run_fields = {f.name for f in fields(RunConfig)}
        for k, v in params.items():
            if k in run_fields:
                values[k] = v
            else:
                model[k] = v
        if model:
            values["model"] = model
        return RunConfig(**values)


# ----------------------------------------------------------------------------------------------------- the spec

def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a sweep spec; SpecError (one line naming the key) on anything that cannot run."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such sweep spec") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    return check_spec(raw, name=path.stem)


def check_spec(raw: dict, name: str = "sweep") -> SweepSpec:
    run_fields = {f.name for f in fields(RunConfig)} - {"sweep", "trial"}
    unknown = sorted(set(raw) - SPEC_KEYS - run_fields)
    if unknown:
        raise SpecError(f"{unknown[0]}: unknown key (run settings: {', '.join(sorted(run_fields))}; sweep settings: "
                        f"{', '.join(sorted(SPEC_KEYS))})")
    fixed = {k: v for k, v in raw.items() if k in run_fields}
    spec = SweepSpec(fixed=fixed, space={}, name=str(raw.get("name") or name))

    def number(key, kind, lo, hi=None):
        v = raw.get(key, getattr(spec, key))
        if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
            raise SpecError(f"{key}: expected {'a number' if kind is float else 'an integer'}, got {v!r}")
        if v < lo or (hi is not None and v > hi):
            raise SpecError(f"{key}: must be between {lo} and {hi}, got {v!r}" if hi is not None
                            else f"{key}: must be at least {lo}, got {v!r}")
        setattr(spec, key, kind(v))

    number("trials", int, 1, 10_000)
    number("concurrency", int, 1, 1_000)
    number("cpus_per_trial", float, 0.0)
    number("gpus_per_trial", float, 0.0)
    number("grace", float, 0.01, 1.0)
    if spec.cpus_per_trial == 0 and spec.gpus_per_trial == 0:
        raise SpecError("cpus_per_trial: a trial needs some CPU or GPU (both are 0)")
    for key, allowed in (("scheduler", SCHEDULERS), ("metric", METRICS)):
        v = raw.get(key, getattr(spec, key))
        if v not in allowed:
            raise SpecError(f"{key}: must be one of {', '.join(allowed)}, got {v!r}")
        setattr(spec, key, v)
    if "storage" in raw:
        if not isinstance(raw["storage"], str) or not raw["storage"].strip():
            raise SpecError(f"storage: expected a path, got {raw['storage']!r}")
        where = Path(raw["storage"]).expanduser()
        real = kernel_interface(where)
        if real:
            raise SpecError(f"storage: {raw['storage']} is a kernel interface ({real}), not a folder for checkpoints")
        if where.exists() and not where.is_dir():
            raise SpecError(f"storage: {raw['storage']} exists and is not a folder")
        spec.storage = raw["storage"]

    space = raw.get("space", {})
    if not isinstance(space, dict) or not space:
        raise SpecError("space: expected a table of searched settings, e.g. lr = { loguniform = [1e-4, 1e-2] }")
    engine = fixed.get("engine", 1)
    if engine not in (1, 2):
        raise SpecError(f"engine: must be 1 or 2, got {engine!r}")
    searchable = (run_fields - {"engine", "data", "device", "model"}) | set(model_options(engine))
    for key, dist in space.items():
        if key not in searchable:
            raise SpecError(f"space.{key}: not a searchable setting (run settings: "
                            f"{', '.join(sorted(run_fields - {'engine', 'data', 'device', 'model'}))}; engine "
                            f"{engine} model options: {', '.join(model_options(engine))})")
        if key in fixed:
            raise SpecError(f"space.{key}: also fixed at the top level; keep one")
        spec.space[key] = _check_dist(key, dist)

    # every combination that can come out must make a valid run: check the extremes / every choice, for real
    for params in _corners(spec.space):
        try:
            spec.trial_config(params).validate()
        except ConfigError as e:
            field_, _, why = str(e).partition(": ")
            where = next((k for k in params if k == field_ or (field_ == "model" and k not in run_fields)), field_)
            prefix = f"space.{where}" if where in spec.space else where
            raise SpecError(f"{prefix}: {why or e} (with {json.dumps(params)})") from None
        except TypeError as e:
            raise SpecError(f"space: {e}") from None
    return spec


def _check_dist(key: str, dist) -> tuple[str, list]:
    if not isinstance(dist, dict) or len(dist) != 1:
        raise SpecError(f"space.{key}: expected one of {{ {' | '.join(f'{s} = [...]' for s in SAMPLERS)} }}, "
                        f"got {dist!r}")
    (kind, args), = dist.items()
    if kind not in SAMPLERS:
        raise SpecError(f"space.{key}: unknown sampler {kind!r} (use {', '.join(SAMPLERS)})")
    if not isinstance(args, list) or not args:
        raise SpecError(f"space.{key}.{kind}: expected a non-empty list, got {args!r}")
    if kind in ("loguniform", "uniform", "randint"):
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise SpecError(f"space.{key}.{kind}: expected [low, high] numbers, got {args!r}")
        lo, hi = args
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise SpecError(f"space.{key}.{kind}: empty range [{lo}, {hi}] (low must be below high)")
        if kind == "loguniform" and lo <= 0:
            raise SpecError(f"space.{key}.loguniform: the range must be positive, got [{lo}, {hi}]")
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            raise SpecError(f"space.{key}.randint: expected [low, high] integers, got {args!r}")
    return kind, list(args)


def _corners(space: dict) -> list[dict]:
    """Combinations that cover every value a sampler can give: both ends of ranges, every choice (one at a time)."""
    base = {}
    for k, (kind, args) in space.items():
        base[k] = args[0] if kind in ("choice", "grid") else (args[1] - 1 if kind == "randint" else args[0])
    out = [dict(base)]
    for k, (kind, args) in space.items():
        values = args if kind in ("choice", "grid") else [args[0], args[1] - 1 if kind == "randint" else args[1]]
        for v in values:
            if v != base[k]:
                out.append({**base, k: v})
    return out


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


# ---------------------------------------------------------------------------------------------------- a trial

def trial_main(config: dict) -> None:
    """The Tune trainable: one ordinary Trainer, every evaluation reported (with its checkpoint) to the driver."""
    from ray import tune

    from engine.headless import auto_recover
    from engine.trainer import BEST_FILE, BEST_META, STATE_FILE, Trainer

    spec = SweepSpec.from_dict(config["__spec__"])
    params = {k: v for k, v in config.items() if not k.startswith("__")}
    cfg = spec.trial_config(params)
    run_dir = Path(tempfile.mkdtemp(prefix="n2n-trial-"))
    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a resumed sweep: continue from the last state this trial reported
        with checkpoint.as_directory() as d:
            for name in (BEST_FILE, BEST_META, STATE_FILE):
                if (Path(d) / name).is_file():
                    shutil.copy(Path(d) / name, run_dir / name)
        resume_from = run_dir
    trainer = Trainer(cfg, run_dir=run_dir, resume_from=resume_from)
    pending = {"steps": [], "events": []}
    lock = threading.Lock()

    def sink(ev) -> None:
        with lock:
            if ev.kind == "step":
                pending["steps"].append([ev.step, ev.epoch, ev.loss if math.isfinite(ev.loss) else None, ev.lr,
                                         ev.img_per_s, ev.time])
            elif ev.kind in ("control", "state"):
                pending["events"].append(_event_record(ev))
        if ev.kind == "eval":
            _report(trainer, ev, pending, lock, run_dir)

    trainer.add_sink(sink)
    trainer.add_sink(auto_recover(trainer, 3))  # nobody at the keyboard: a blown-up loss halves the rate
    try:
        final = trainer.run()
        with lock:
            leftover = pending["steps"] or pending["events"]
        if leftover or final != "finished":
            tune.report({**_status(trainer), "final": final, **_take(pending, lock)})
    finally:
        # what the trial wrote went to Tune as checkpoints; the worker (reused for the next trial) keeps nothing
        shutil.rmtree(run_dir, ignore_errors=True)


def _event_record(ev) -> dict:
    from engine.headless import event_dict

    return event_dict(ev)


def _take(pending: dict, lock) -> dict:
    with lock:
        out = {"steps": pending["steps"], "events": pending["events"]}
        pending["steps"], pending["events"] = [], []
    return out


def _status(trainer) -> dict:
    t = trainer
    return {"step": t.step, "epoch": t.epoch, "total_steps": t.total_steps,
            "progress": round(1000 * t.step / t.total_steps) if t.total_steps else 0,
            "best_psnr": t.best_psnr if t.best_psnr is not None else float("-inf"), "best_step": t.best_step,
            "psnr": t.last_psnr if t.last_psnr is not None else float("-inf"),  # the metric Tune expects each time
            "lr": t.lr, "img_per_s": t.img_per_s, "device": t.device, "host": socket.gethostname(),
            "node": _node_id(),
            "state": t.state}


def _report(trainer, ev, pending, lock, run_dir: Path) -> None:
    """One evaluation to Tune: the PSNR, what happened since the last report, and a checkpoint (best weights,
    the latest full state) that the driver copies into the run's folder."""
    from ray import tune

    from engine.trainer import BEST_FILE, BEST_META, STATE_FILE
    from sessions.protocol import pack_patches

    metrics = {**_status(trainer), "psnr": ev.psnr, **_take(pending, lock),
               "eval": {"step": ev.step, "epoch": ev.epoch, "psnr": ev.psnr, "psnr_noisy": ev.psnr_noisy,
                        "samples": {k: pack_patches(getattr(ev, k)) for k in ("noisy", "denoised", "clean")}}}
    out = Path(tempfile.mkdtemp(prefix="n2n-ckpt-"))
    for name in (BEST_FILE, BEST_META, STATE_FILE):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, out / name)
    try:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(out)))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return ""


# ------------------------------------------------------------------------------------------------- the driver

@dataclass
class TrialView:
    """What the driver knows of one trial (the sweep view's row)."""
    trial: str
    run: str
    params: dict
    state: str = "pending"
    step: int = 0
    total_steps: int = 0
    psnr: float | None = None
    best_psnr: float | None = None
    best_step: int | None = None
    noisy_psnr: float | None = None     # the noisy input's own PSNR on the trial's validation images
    early_stopped: bool = False
    node: str = ""
    lr: float | None = None
    history: list = field(default_factory=list)  # (step, psnr)
    last_eval: object = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("trial", "run", "params", "state", "step", "total_steps", "psnr",
                                               "best_psnr", "best_step", "early_stopped", "node")}

    @property
    def improved(self) -> bool:
        """Its training produced something: a best after step 0 (the untrained start) that beats the noisy input."""
        return (self.best_psnr is not None and (self.best_step or 0) > 0
                and (self.noisy_psnr is None or self.best_psnr > self.noisy_psnr))


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
    if address in (None, "local"):
        ray.init(num_cpus=num_cpus, **kwargs)
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


class SweepDriver:
    """Runs a sweep on Ray Tune and records it: the ``sweeps`` row, one ordinary run per trial. ``listeners`` get
    one dict per sweep event (``trial_start``, ``trial_result``, ``trial_end``, ``sweep_end``), from Tune's thread."""

    def __init__(self, store, spec: SweepSpec, *, sweep_id: str | None = None, resume: bool = False):
        self.store, self.spec = store, spec
        self.resume = resume
        self.sweep_id = sweep_id or self._new_id()
        self.trials: dict[str, TrialView] = {}
        self.listeners: list = []
        self.recorders: dict[str, object] = {}
        self.trial_sinks: dict[str, list] = {}  # trial id -> viewers of that trial (a dashboard), as run events
        self._stop_trials: set[str] = set()
        self._stop_all = False
        self._lock = threading.Lock()
        self.storage = Path(spec.storage or store.root / "sweeps").resolve()
        self.state = "pending"

    @staticmethod
    def _new_id() -> str:
        return "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()

    # ------------------------------------------------------------------------------------------------ control
    def stop_trial(self, trial: str) -> None:
        with self._lock:
            self._stop_trials.add(trial)

    def stop(self) -> None:
        with self._lock:
            self._stop_all = True

    def _stopper(self):
        from ray import tune

        class Stopper(_Unpickled, tune.Stopper):
            def __call__(self, trial_id, result):
                driver = self.driver
                return driver is not None and driver.trial_stop_asked(trial_id)

            def stop_all(self):
                return self.driver is not None and self.driver.sweep_stop_asked()

        return Stopper(self)

    def trial_stop_asked(self, trial_id: str) -> bool:
        with self._lock:
            return trial_id in self._stop_trials

    def sweep_stop_asked(self) -> bool:
        with self._lock:
            return self._stop_all

    def _emit(self, event: dict) -> None:
        event = {"sweep": self.sweep_id, "time": time.time(), **event}
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                pass

    # --------------------------------------------------------------------------------------------------- run
    def run(self) -> dict:
        """Run the sweep to its end (or until stopped); returns the summary (best trial and its run)."""
        import logging

        from ray import tune

        logging.getLogger("ray.tune").setLevel(logging.ERROR)  # its notes on the files we told it not to write
        spec = self.spec
        scheduler = None
        if spec.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            # time is training progress in per mille, so trials of different batch sizes meet at the same rungs
            scheduler = ASHAScheduler(time_attr="progress", max_t=1000, grace_period=max(1, round(1000 * spec.grace)),
                                      reduction_factor=2)
        trainable = tune.with_resources(trial_main, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
        if spec.storage is None and not self.storage.exists():  # our own folder for Tune's checkpoints: as private
            make_dir(self.storage, self.store.folder_mode)          # as the run folders (Tune's files follow umask)
        experiment = self.storage / self.sweep_id
        if self.resume:
            if not tune.Tuner.can_restore(str(experiment)):
                raise SpecError(f"sweep {self.sweep_id}: nothing to resume in {experiment}")
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, restart_errored=True)
        else:
            self.store.new_sweep(self.sweep_id, spec.to_dict(), str(experiment))
            space = tune_space(spec.space)
            space["__spec__"] = spec.to_dict()
            tuner = tune.Tuner(
                trainable, param_space=space,
                tune_config=tune.TuneConfig(metric=spec.metric, mode="max", scheduler=scheduler,
                                            num_samples=spec.samples(), max_concurrent_trials=spec.concurrency,
                                            reuse_actors=True),  # a worker trains trial after trial: no restart
                run_config=tune.RunConfig(name=self.sweep_id, storage_path=str(self.storage), verbose=0,
                                          stop=self._stopper(), callbacks=[_Callback(self)],
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        if self.resume:  # a restored Tuner keeps its own run config: hand it our callback and stopper again
            rc = tuner._local_tuner._run_config if hasattr(tuner, "_local_tuner") else None
            if rc is not None:
                rc.callbacks = [_Callback(self)]
                rc.stop = self._stopper()
        self.state = "running"
        self.store.set_sweep_state(self.sweep_id, "running")
        final = "failed"
        try:
            tuner.fit()
            # Tune answers Ctrl-C by winding down and returning: a sweep is finished only when every trial ended
            ended = [r for r in self.store._trial_rows(self.sweep_id) if r["state"] not in ("running", "paused")]
            complete = len(ended) >= spec.trial_count() and all(t.state not in ("pending", "running")
                                                                 for t in self.trials.values())
            final = "finished" if complete and not self._stop_all else "stopped"
        except KeyboardInterrupt:
            final = "stopped"
            raise
        finally:
            self.state = final
            for trial in self.trials.values():  # trials Tune never ended (Ctrl-C, a driver error): say so
                if trial.state in ("pending", "running"):
                    self._end_trial(trial, "stopped", "the sweep stopped")
            best = self.best()
            self.store.set_sweep_state(self.sweep_id, final, best.run if best else None,
                                       best.best_psnr if best else None)
            self._emit({"event": "sweep_end", "state": final, "best": best.to_dict() if best else None})
        return {"sweep": self.sweep_id, "state": final, "best": best.to_dict() if best else None,
                "trials": [t.to_dict() for t in self.trials.values()]}

    def best(self) -> TrialView | None:
        """The winner: the best PSNR among trials whose training improved on their start (``TrialView.improved``);
        None when none did."""
        done = [t for t in self.trials.values() if t.improved]
        return max(done, key=lambda t: t.best_psnr) if done else None

    # ---------------------------------------------------------------------------------------- Tune's callbacks
    def _start(self, trial) -> None:
        from engine.events import StateEvent

        from .recorder import Recorder

        params = {k: v for k, v in trial.config.items() if not k.startswith("__")}
        existing = self.store.find_trial_run(self.sweep_id, trial.trial_id)
        if existing is not None:  # a resumed sweep continues the trial's run
            run_id = existing
            self.store.begin_resume(run_id, 0, "the sweep resumed this trial")
        else:
            cfg = self.spec.trial_config(params)
            cfg.sweep, cfg.trial = self.sweep_id, trial.trial_id
            run_id = self.store.new_run(cfg)
        self.recorders[trial.trial_id] = Recorder(self.store, run_id)
        self._record(trial.trial_id, StateEvent(run_id, "running"))
        view = TrialView(trial.trial_id, run_id, params, state="running")
        self.trials[trial.trial_id] = view
        self._emit({"event": "trial_start", "trial": trial.trial_id, "run": run_id, "params": params})

    def _result(self, trial, result: dict) -> None:
        from engine.events import ControlEvent, EvalEvent, StateEvent, StepEvent

        from .protocol import unpack_patches

        view = self.trials.get(trial.trial_id)
        if view is None:
            return
        rec, run = self.recorders[trial.trial_id], view.run
        view.lr = result.get("lr", view.lr)
        total = int(result.get("total_steps") or 0)
        for s, e, loss, lr, ips, t in result.get("steps") or []:
            self._record(trial.trial_id, StepEvent(run, s, e, float("nan") if loss is None else loss, lr, ips, total, time=t))
        for d in result.get("events") or []:
            if d.get("event") == "control":
                self._record(trial.trial_id, ControlEvent(run, d["action"], d.get("detail", ""), d.get("step", 0), d.get("value"),
                                 time=d.get("time", time.time())))
            elif d.get("event") == "state" and d.get("state") in ("running", "paused"):
                self._record(trial.trial_id, StateEvent(run, d["state"], d.get("message", ""), d.get("step", 0), d.get("epoch", 0)))
        ev = result.get("eval")
        if isinstance(ev, dict):
            samples = ev.get("samples") or {}
            best = result.get("best_psnr")
            self._record(trial.trial_id, EvalEvent(
                run, int(ev["step"]), int(ev["epoch"]), ev["psnr"],
                best if best is not None and math.isfinite(best) else ev["psnr"],
                *(unpack_patches(samples.get(k)) for k in ("noisy", "denoised", "clean")), psnr_noisy=ev.get("psnr_noisy")))
            view.psnr = ev["psnr"]
            view.history.append((int(ev["step"]), ev["psnr"]))
            if ev.get("psnr_noisy") is not None:
                view.noisy_psnr = ev["psnr_noisy"]
        # (the trial's best is taken when its weights arrive, in _checkpoint: the sweep never claims a best that
        # its run folder cannot export, e.g. when Ctrl-C comes between a result and its checkpoint)
        view.step, view.total_steps = int(result.get("step", view.step)), total or view.total_steps
        view.node = result.get("node") or view.node
        rec.flush()
        self._emit({"event": "trial_result", "trial": trial.trial_id, "run": run, "step": view.step,
                    "total_steps": view.total_steps, "psnr": view.psnr, "best_psnr": view.best_psnr,
                    "node": view.node})

    def _checkpoint(self, trial, checkpoint) -> None:
        """The trial's best weights (and latest state) into its run's folder, so export and resume work here."""
        from engine.events import SavedEvent
        from engine.trainer import BEST_FILE, BEST_META, STATE_FILE, read_best_meta

        view = self.trials.get(trial.trial_id)
        if view is None:
            return
        run_dir = self.store.run_dir(view.run)
        with checkpoint.as_directory() as d:
            meta_before = read_best_meta(run_dir)
            for name in (BEST_FILE, STATE_FILE, BEST_META):  # best.json last: it vouches for best.pth
                if (Path(d) / name).is_file():  # the run's own files: the store's mode, whatever Tune's copy had
                    atomic_write_bytes(run_dir / name, (Path(d) / name).read_bytes(), self.store.file_mode)
        meta = read_best_meta(run_dir)
        if meta and meta != meta_before:
            self._record(trial.trial_id, SavedEvent(view.run, str(run_dir / BEST_FILE), meta.get("psnr"),
                                                      meta.get("step") or 0, "best"))
        if meta and meta.get("psnr") is not None:  # the best the run folder holds: what the sweep reports
            view.best_psnr, view.best_step = float(meta["psnr"]), int(meta.get("step") or 0)

    def _record(self, trial_id: str, event) -> None:
        """A trial's event into its run's record, and to whoever watches that trial."""
        self.recorders[trial_id](event)
        if event.kind == "eval":
            self.trials[trial_id].last_eval = event
        for sink in list(self.trial_sinks.get(trial_id, ())):
            try:
                sink(event)
            except Exception:
                pass

    def _complete(self, trial, error: bool = False) -> None:
        view = self.trials.get(trial.trial_id)
        if view is None or view.state not in ("running", "pending"):
            return
        last = trial.last_result or {}
        final = last.get("final")
        if error:
            self._end_trial(view, "failed", "the trial raised an error (see Ray's log)")
        elif final in ("finished", "stopped", "failed"):
            self._end_trial(view, final, "")
        elif trial.trial_id in self._stop_trials or self._stop_all:
            self._end_trial(view, "stopped", "stopped from the sweep")
        elif view.total_steps and view.step < view.total_steps:
            view.early_stopped = True
            self._end_trial(view, "stopped", f"early-stopped by ASHA at step {view.step} of {view.total_steps}")
        else:
            self._end_trial(view, "finished", "")

    def _end_trial(self, view: TrialView, state: str, message: str) -> None:
        from engine.events import StateEvent

        view.state = state
        if view.trial in self.recorders:
            self._record(view.trial, StateEvent(view.run, state, message, view.step))
        self._emit({"event": "trial_end", "trial": view.trial, "run": view.run, "state": state,
                    "early_stopped": view.early_stopped, "message": message, "best_psnr": view.best_psnr})


class _Unpickled:
    """Tune pickles its run config (callbacks, stopper) into the experiment: ours keep the driver (a store
    connection, locks) only in memory; a restored sweep hands them a driver again."""

    def __init__(self, driver: SweepDriver | None = None):
        self.driver = driver

    def __getstate__(self):
        return {"driver": None}


def _Callback(driver: SweepDriver):
    from ray import tune

    class Callback(_Unpickled, tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            if self.driver is not None:
                self.driver._start(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.driver is not None:
                self.driver._result(trial, result)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            if self.driver is not None:
                self.driver._checkpoint(trial, checkpoint)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.driver is not None:
                self.driver._complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.driver is not None:
                self.driver._complete(trial, error=True)

    return Callback(driver)


class TrialRun:
    """One trial of a running sweep with a run handle's face, for the ordinary dashboard: its events come from the
    driver; it can be stopped (by the sweep's stopper, at its next evaluation) and its best weights exported, but
    not paused or re-tuned: the sweep owns its settings."""

    remote = True  # it lives on when its dashboard closes

    def __init__(self, driver: SweepDriver, trial_id: str):
        self.driver, self.trial_id = driver, trial_id
        view = driver.trials[trial_id]
        self.run_id = view.run
        row = driver.store.get_run(view.run, metrics=False, events=False)
        self.config = RunConfig.from_dict(row["config"])
        self.device, self.epoch, self.best_step, self.message = row["config"].get("device") or "", row["epoch"], \
            row["best_step"], ""
        self.pid = os.getpid()
        self.where = f"trial {trial_id} of {driver.sweep_id}"
        self.dataset = None
        self._sinks: list = []

    def _view(self) -> TrialView:
        return self.driver.trials[self.trial_id]

    state = property(lambda self: self._view().state)
    step = property(lambda self: self._view().step)
    total_steps = property(lambda self: self._view().total_steps)
    best_psnr = property(lambda self: self._view().best_psnr)
    lr = property(lambda self: self._view().lr)

    def add_sink(self, sink) -> None:
        self._sinks.append(sink)
        self.driver.trial_sinks.setdefault(self.trial_id, []).append(sink)

    def start(self) -> None:
        pass  # the sweep runs it already

    def _refuse(self, *args) -> None:
        raise ValueError("a sweep trial runs with the sweep's settings: it can be stopped (x), not paused or re-tuned")

    pause = resume = set_lr = _refuse

    def stop(self, reason: str = "") -> None:
        self.driver.stop_trial(self.trial_id)

    def export(self, path=None, force: bool = False) -> dict:
        from .export import export_run

        return export_run(self.driver.store, self.run_id, path, force=force)

    def latest_patches(self):
        e = self._view().last_eval
        return (e.noisy, e.denoised, e.clean) if e is not None and e.noisy is not None else None

    def close(self) -> None:
        sinks = self.driver.trial_sinks.get(self.trial_id, [])
        for sink in self._sinks:
            if sink in sinks:
                sinks.remove(sink)
        self._sinks = []
