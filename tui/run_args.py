"""From ``train`` arguments (the command line's, or the launcher's form) to a run: a validated ``RunConfig``, a
recorded ``Trainer`` in this process, or a run handle to watch. What ``n2n-tui train`` and the launcher share; the
work itself is ``sessions.launch``."""
from __future__ import annotations

from engine.config import RunConfig
from engine.specs import default_spec
from sessions.launch import open_run, start_run
from tui.parser import threads_setting

CONFIG_ARGS = ("engine", "data", "noise", "epochs", "batch_size", "lr", "subset", "n_val", "fresh", "float_targets",
               "crop", "eval_every", "seed", "device", "loss", "schedule", "warmup", "decay_to", "step_every", "gamma")


def config_from_args(args) -> RunConfig:
    """A validated RunConfig from parsed ``train`` arguments (missing ones take RunConfig's defaults)."""
    values = {k: getattr(args, k) for k in CONFIG_ARGS if getattr(args, k, None) is not None}
    values.setdefault("data", default_spec())
    values["threads"] = threads_setting(args)
    return RunConfig(**values).validate()


def _run_options(args) -> dict:
    """``sessions.launch``'s keywords from ``args``: it needs ``runs_dir`` and either ``resume`` (a run reference)
    or the RunConfig fields; any object with those attributes works, e.g. ``SimpleNamespace``."""
    resume = getattr(args, "resume", None)
    return {"runs_dir": getattr(args, "runs_dir", None) or "runs",
            "config": None if resume is not None else config_from_args(args), "resume": resume,
            "device": getattr(args, "device", None), "threads": getattr(args, "threads", None)}


def make_trainer(args, *, load: bool = True, sinks=()):
    """A recorded, ready-to-run ``(Trainer, Store)`` in this process (``sessions.launch.open_run``)."""
    opts = _run_options(args)
    return open_run(opts.pop("runs_dir"), opts.pop("config"), load=load, sinks=sinks, **opts)


def start_from_args(args):
    """A run handle to watch, as ``(handle, store)`` (``sessions.launch.start_run``): a runner process, or this
    process with ``--in-process``."""
    opts = _run_options(args)
    return start_run(opts.pop("runs_dir"), opts.pop("config"), in_process=bool(getattr(args, "in_process", False)),
                     **opts)
