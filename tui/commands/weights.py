"""Which weights a command uses: ``--weights PATH`` (a checkpoint file), ``--weights NAME`` (shipped weights by name,
``engine.models.NAMED_WEIGHTS``: ``gaussian25``), ``--weights RUN`` (a stored run's best weights: id, unique prefix or
``last``), or the engine's shipped ``bestmodel.pth``; and the loaded ``Model``."""
from __future__ import annotations

from pathlib import Path

from engine.errors import first_line
from engine.models import NAMED_WEIGHTS, bestmodel_path, named_weights, new_model
from tui.errors import UsageError


def resolve_weights(ref: str | None, engine: int | None, runs_dir: str) -> tuple[int, Path]:
    """(engine, checkpoint path). A run's engine wins over the default; an explicit ``--engine`` must agree."""
    if ref is None:
        return engine or 1, bestmodel_path(engine or 1)
    path = Path(ref)
    if path.is_file():
        return engine or 1, path
    if path.suffix in (".pth", ".pt") or "/" in ref:
        raise UsageError(f"--weights {ref}: no such file")
    named = named_weights(ref)
    if named is not None:
        if engine is not None and engine != named[0]:
            raise UsageError(f"--weights {ref}: shipped weights of engine {named[0]}, not --engine {engine}")
        return named
    from sessions import Store, StoreError

    try:
        with Store(runs_dir, create=False, readonly=True) as store:
            run = store.get_run(ref, metrics=False, events=False)
    except StoreError as e:
        raise UsageError(f"--weights {ref}: neither a file, nor shipped weights ({', '.join(NAMED_WEIGHTS)}), nor a "
                         f"run in {runs_dir} ({e})") from None
    if engine is not None and engine != run["engine"]:
        raise UsageError(f"--weights {ref}: run {run['id']} trained engine {run['engine']}, not --engine {engine}")
    best = Path(run["run_dir"]) / "best.pth"
    if not best.is_file():
        raise UsageError(f"--weights {ref}: run {run['id']} has no best weights yet ({best})")
    return run["engine"], best


def load_model(engine: int, weights: Path, device: str | None = None):
    """A fresh ``Model()`` of ``engine`` with ``weights`` loaded; one-line UsageError when they do not load."""
    if not weights.is_file():
        raise UsageError(f"--weights {weights}: no such file")
    model = new_model(engine, device)
    try:
        model.load_pretrained_model(str(weights))
    except (ValueError, RuntimeError, KeyError, EOFError) as e:
        msg = first_line(e)
        raise UsageError(msg if msg.startswith(str(weights)) else f"--weights {weights}: {msg}") from None
    return model
