"""``RunConfig``: everything that defines a training run, validated with errors that name the bad field."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .data import MAX_PAIRS, DataError, parse_spec, size_problem
from .noise import parse_noise

# Upper bounds: far beyond any real run, and small enough that every count fits the store's 64-bit integers
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_EVAL_EVERY = 10**9
MAX_SEED = 2**31 - 1


class ConfigError(ValueError):
    """A run configuration that cannot work; the message names the field."""


@dataclass
class RunConfig:
    engine: int = 1               # 1: Miniproject_1 (PyTorch), 2: Miniproject_2 (from scratch)
    data: str = "sample"          # sample | course:DIR | images:DIR
    noise: str = "mix"            # a noise spec, "gaussian" or "gaussian:25" (engine.noise; ignored for course data)
    epochs: int = 1
    batch_size: int | None = None  # None: the model's own default
    lr: float | None = None        # None: the model's own default
    subset: int | None = None     # use only the first N training pairs
    n_val: int = 1000             # validation pairs
    eval_every: int = 0           # evaluate every N steps (0: only at epoch ends)
    seed: int = 0
    device: str | None = None     # None: cuda when available, else cpu
    loss: str | None = None       # "l1" | "l2"; None: the model's own default

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
        if self.subset is not None:
            integer("subset", self.subset, 1, MAX_PAIRS, "a positive integer")
            if generated and size_problem(self.subset):
                bad("subset", size_problem(self.subset))
        integer("n_val", self.n_val, 1, MAX_PAIRS, "a positive integer")
        if generated and size_problem(self.n_val):
            bad("n_val", size_problem(self.n_val))
        integer("eval_every", self.eval_every, 0, MAX_EVAL_EVERY, "0 (epoch ends only) or a positive integer")
        integer("seed", self.seed, 0, MAX_SEED, "a non-negative integer")
        if self.device is not None and self.device.split(":")[0] not in ("cpu", "cuda"):
            bad("device", f"must be cpu or cuda, got {self.device!r}")
        if self.device is not None and self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                bad("device", "cuda was asked for but no CUDA device is available")
        if self.loss is not None and self.loss not in ("l1", "l2"):
            bad("loss", f"must be l1 or l2, got {self.loss!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)
