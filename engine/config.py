"""``RunConfig``: everything that defines a training run, validated with errors that name the bad field."""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields

from .cadence import MAX_EVAL_EVERY, parse_eval_every
from .errors import N2NError, first_line
from .specs import CROP, MAX_PAIRS, DataError, crop_problem, parse_noise, parse_spec, size_problem

# Upper bounds: far beyond any real run, and small enough that every count fits the store's 64-bit integers
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_SEED = 2**31 - 1


def new_run_id() -> str:
    """Short, sortable, unique enough: ``20261127-004512-a1b2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()


class ConfigError(N2NError, ValueError):
    """A run configuration that cannot work; the message names the field."""


def model_options(engine: int) -> tuple[str, ...]:
    """The options the engine's ``Model(...)`` takes besides device, lr and batch size (its network's shape, loss)."""
    import inspect

    from .models import model_module

    cls = model_module(engine).Model
    params = [n for n, p in inspect.signature(cls).parameters.items() if p.kind is not p.VAR_KEYWORD]
    return tuple(n for n in params if n not in ("device", "lr", "batch_size"))


def model_options_problem(engine: int, options) -> str | None:
    """Why ``Model(**options)`` of the engine cannot be built (an unknown option, a bad value), or None: the Model's
    own answer, from its ``check_options`` (which builds nothing: a width of 10**8 is refused, not allocated)."""
    if not isinstance(options, dict):
        return f"must be a table of Model options, got {type(options).__name__}"
    known = model_options(engine)
    unknown = sorted(set(options) - set(known))
    if unknown:
        return f"unknown Model option(s) {', '.join(unknown)} for engine {engine} (known: {', '.join(known)})"
    from .models import model_module

    try:
        model_module(engine).Model.check_options(**options)
    except (ValueError, TypeError) as e:
        return first_line(e)
    return None


@dataclass
class RunConfig:
    engine: int = 1               # 1: Miniproject_1 (PyTorch), 2: Miniproject_2 (from scratch)
    data: str = "sample"          # sample | leaves | pypi | course:DIR | images:DIR | a mixture (engine.specs)
    noise: str = "mix"            # a noise spec, "gaussian" or "gaussian:25" (engine.noise; ignored for course data)
    epochs: int = 1
    batch_size: int | None = None  # None: the model's own default
    lr: float | None = None        # None: the model's own default
    subset: int | None = None     # use only the first N training pairs
    n_val: int = 1000             # validation pairs
    fresh: bool = False           # new training pairs every epoch: new noise, new leaves images (engine.fresh)
    float_targets: bool = False   # training targets in float: noise not rounded, not clipped (noise.corrupt_target)
    crop: int = CROP              # side of the generated training crops (validation crops stay 32)
    eval_every: int | str = "auto"  # evaluate every N steps, 0: epoch ends only, auto: ~20 per run (engine.cadence)
    seed: int = 0
    device: str | None = None     # None: cuda when available, else cpu
    threads: int | str = "auto"   # torch CPU threads: a count, or auto (adapts to what the machine has free)
    loss: str | None = None       # "l1" | "l2"; None: the model's own default
    model: dict | None = None     # engine-specific Model options (Miniproject_1: widths; Miniproject_2: c1, c2, c3, k)
    schedule: str = "constant"    # learning-rate schedule: constant | cosine | step | onecycle (engine.schedule)
    warmup: int = 0               # steps of linear warm-up (onecycle: its rise)
    decay_to: float = 0.01        # cosine, onecycle: the final rate as a fraction of lr
    step_every: int = 0           # step: steps between decays (0: one epoch)
    gamma: float = 0.5            # step: the factor of each decay
    sweep: str | None = None      # the sweep this run is a trial of
    trial: str | None = None      # ... and its trial id there (Ray Tune's)

    def validate(self) -> "RunConfig":
        def bad(field, why):
            raise ConfigError(f"{field}: {why}")

        if self.engine not in (1, 2):
            bad("engine", f"must be 1 or 2, got {self.engine!r}")
        try:
            parse_spec(self.data)
        except DataError as e:
            bad("data", str(e))
        try:
            parse_noise(self.noise)
        except ValueError as e:
            bad("noise", str(e))
        def integer(field, value, lo, hi, what):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                bad(field, f"must be {what} (at most {hi:,}), got {value!r}")

        integer("epochs", self.epochs, 1, MAX_EPOCHS, "a positive integer")
        if self.batch_size is not None:
            integer("batch_size", self.batch_size, 1, MAX_BATCH, "a positive integer")
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr)
                                    or self.lr <= 0):
            bad("lr", f"must be a positive number, got {self.lr!r}")
        generated = not str(self.data).startswith("course:")
        if crop_problem(self.crop, generated):
            bad("crop", crop_problem(self.crop, generated))
        if self.subset is not None:
            integer("subset", self.subset, 1, MAX_PAIRS, "a positive integer")
            if generated and size_problem(self.subset, self.crop):
                bad("subset", size_problem(self.subset, self.crop))
        if not isinstance(self.fresh, bool):
            bad("fresh", f"must be true or false, got {self.fresh!r}")
        if self.fresh and not generated:
            bad("fresh", "course data comes already noisy, with no clean images to draw new noise on: "
                         "fresh pairs need a generated source (sample, leaves, pypi, images:DIR)")
        if not isinstance(self.float_targets, bool):
            bad("float_targets", f"must be true or false, got {self.float_targets!r}")
        if self.float_targets and not generated:
            bad("float_targets", "course data comes already noisy, with no clean images to draw float targets on: "
                                 "they need a generated source (sample, leaves, pypi, images:DIR)")
        integer("n_val", self.n_val, 1, MAX_PAIRS, "a positive integer")
        if generated and size_problem(self.n_val):
            bad("n_val", size_problem(self.n_val))
        try:
            parse_eval_every(self.eval_every)
        except ValueError as e:
            bad("eval_every", str(e).removeprefix("eval_every "))
        integer("seed", self.seed, 0, MAX_SEED, "a non-negative integer")
        from .threads import parse_threads

        try:
            parse_threads(self.threads)
        except ValueError as e:
            bad("threads", str(e).removeprefix("threads "))
        if self.device is not None and self.device.split(":")[0] not in ("cpu", "cuda"):
            bad("device", f"must be cpu or cuda, got {self.device!r}")
        if self.device is not None and self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                bad("device", "cuda was asked for but no CUDA device is available")
        if self.loss is not None and self.loss not in ("l1", "l2"):
            bad("loss", f"must be l1 or l2, got {self.loss!r}")
        from .schedule import SCHEDULES

        if self.schedule not in SCHEDULES:
            bad("schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        integer("warmup", self.warmup, 0, MAX_EVAL_EVERY, "a non-negative integer")
        integer("step_every", self.step_every, 0, MAX_EVAL_EVERY, "a non-negative integer")
        for name, value in (("decay_to", self.decay_to), ("gamma", self.gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                bad(name, f"must be a number in (0, 1], got {value!r}")
        if self.model is not None:
            problem = model_options_problem(self.engine, self.model)
            if problem:
                bad("model", problem)
        return self

    def model_options(self) -> dict:
        """What the engine's ``Model`` is built with besides its device: the model options and the loss."""
        options = dict(self.model or {})
        if self.loss:
            options["loss"] = self.loss
        return options

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)
