"""The engine: data sources, noise models, metrics, and the training loop with live control and events; and the
photo tools: image files in and out (``images``), whole photographs through a model in tiles (``tiles``), classical
baselines (``baselines``).

``RunConfig`` and ``Trainer`` are the entry points; ``Trainer`` is imported on first use so that light commands
(``n2n-tui data``) do not pay for it. ``config``, ``specs`` (what the data and noise options mean), ``events`` and
``headless`` import no torch: a viewer of a live run (``n2n-tui attach``, ``ctl``) loads none, and starts in about
half a second instead of one and a half.
"""
from .config import ConfigError, RunConfig

__all__ = ["ConfigError", "RunConfig", "Trainer"]


def __getattr__(name):
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
