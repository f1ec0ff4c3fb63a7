"""The engine: data sources, noise models, metrics, and the training loop with live control and events; and the
photo tools: image files in and out (``images``), whole photographs through a model in tiles (``tiles``), classical
baselines (``baselines``).

- the loop: ``trainer`` (one plain loop you can read top to bottom), with its parts ``live_control`` (pause, stop,
  live hyper-parameters between two steps) and ``train_state`` (best weights, the full training state, resuming);
  ``schedule`` (learning-rate schedules), ``threads`` (torch's thread count on a shared machine), ``system``;
- what the loop works on: ``config`` (``RunConfig``), ``specs`` / ``data`` / ``noise`` (data and noise options and
  the data itself), ``models`` (the two Miniprojects' ``Model`` behind one door, and ``EngineModel``: what the engine
  asks of one), ``metrics``, ``evaluate``;
- what it says: ``events`` (plain event objects), ``states`` (``RunState`` and its groups), ``patches`` (sample
  patches in every form they travel), ``errors`` (``N2NError``, ``first_line``), ``headless`` (the terminal printer);
  ``fileio`` (atomic, private, link-refusing files).

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
