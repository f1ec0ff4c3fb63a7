"""``RunConfig``: everything that defines a training run, validated with errors that name the bad field."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .data import DataError, parse_spec
from .noise import parse_noise


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
        if not isinstance(self.epochs, int) or self.epochs < 1:
            bad("epochs", f"must be a positive integer, got {self.epochs!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            bad("batch_size", f"must be a positive integer, got {self.batch_size!r}")
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr)
                                    or self.lr <= 0):
            bad("lr", f"must be a positive number, got {self.lr!r}")
        if self.subset is not None and (not isinstance(self.subset, int) or self.subset < 1):
            bad("subset", f"must be a positive integer, got {self.subset!r}")
        if not isinstance(self.n_val, int) or self.n_val < 1:
            bad("n_val", f"must be a positive integer, got {self.n_val!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            bad("eval_every", f"must be 0 (epoch ends only) or a positive integer, got {self.eval_every!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            bad("seed", f"must be a non-negative integer, got {self.seed!r}")
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
