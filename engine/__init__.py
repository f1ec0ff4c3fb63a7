"""The engine: data sources, noise models, metrics, and the training loop with live control and events.

``RunConfig`` and ``Trainer`` are the entry points; ``Trainer`` is imported on first use so that light commands
(``n2n-tui data``) do not pay for it.
"""
from .config import ConfigError, RunConfig

__all__ = ["ConfigError", "RunConfig", "Trainer"]


def __getattr__(name):
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
