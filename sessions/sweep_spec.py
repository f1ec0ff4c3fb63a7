"""A sweep's spec: the TOML file that describes many runs of one search space (``load_spec``), checked before Ray
starts (every bad key gets one line naming it), and the ``RunConfig`` of each trial. No Ray here: the command line
checks a spec without it; ``sessions.sweep`` runs one."""
from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from engine.config import ConfigError, RunConfig, model_options
from engine.errors import N2NError
from engine.fileio import kernel_interface

SPEC_KEYS = {"trials", "concurrency", "scheduler", "metric", "cpus_per_trial", "gpus_per_trial", "storage", "space",
             "name", "grace", "perturbation_interval", "perturbation_steps", "quantile", "resample_probability"}
PBT_KEYS = ("perturbation_interval", "perturbation_steps", "quantile", "resample_probability")
SAMPLERS = ("loguniform", "uniform", "randint", "choice", "grid")
SCHEDULERS = ("asha", "pbt", "none")
METRICS = ("psnr", "best_psnr")


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
    # PBT: a trial is judged every ``perturbation_interval`` evaluations (or every ``perturbation_steps`` steps, when
    # given); one in the bottom ``quantile`` takes the weights of one in the top and perturbs its live settings, each
    # redrawn from the space with ``resample_probability`` (else multiplied by 0.8 or 1.2, or a neighbouring choice)
    perturbation_interval: int = 4
    perturbation_steps: int | None = None
    quantile: float = 0.25
    resample_probability: float = 0.25
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

    def mutations(self) -> dict:
        """PBT: the searched settings a trial can change while it trains (the Model's live hyper-parameters)."""
        return {k: v for k, v in self.space.items() if k in live_settings(self.fixed.get("engine", 1))}

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
    number("perturbation_interval", int, 1, 1_000_000)
    number("quantile", float, 0.01, 0.5)
    number("resample_probability", float, 0.0, 1.0)
    if raw.get("perturbation_steps") is not None:
        number("perturbation_steps", int, 1, 10**9)
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

    if spec.scheduler == "pbt":
        _check_pbt(spec, raw, engine)
    else:
        given = [k for k in PBT_KEYS if k in raw]
        if given:
            raise SpecError(f"{given[0]}: a setting of scheduler = \"pbt\" (this sweep's scheduler is "
                            f"{spec.scheduler})")
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


def live_settings(engine: int) -> tuple[str, ...]:
    """The settings of the space that a trial can change while it trains: the engine's Model's live
    hyper-parameters that a run's config also sets (lr, batch_size)."""
    from engine.models import model_module

    run_fields = {f.name for f in fields(RunConfig)}
    return tuple(k for k in model_module(engine).Model.HYPERPARAMETERS if k in run_fields)


def _check_pbt(spec: SweepSpec, raw: dict, engine: int) -> None:
    if "concurrency" not in raw:  # a population trains at once; with fewer slots Tune time-shares by pausing trials
        spec.concurrency = spec.trial_count()
    if "perturbation_interval" in raw and "perturbation_steps" in raw:
        raise SpecError("perturbation_steps: give perturbation_interval (evaluations) or perturbation_steps, not both")
    if not spec.mutations():
        raise SpecError(f"scheduler: pbt changes live settings as trials train, and space has none of "
                        f"{', '.join(live_settings(engine))}")
    if spec.trial_count() < 2:
        raise SpecError(f"trials: pbt needs a population of at least 2 trials, got {spec.trial_count()}")
    if spec.metric != "psnr":
        raise SpecError("metric: pbt compares trials on their latest PSNR; use metric = \"psnr\"")
    fixed_eval = spec.fixed.get("eval_every", "auto")
    if fixed_eval == 0:
        raise SpecError("eval_every: pbt judges trials at evaluations; 0 (epoch ends only) leaves it too few")


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
