"""Export a run's best weights as a grader-ready ``bestmodel.pth``, proven by reloading.

The bytes of the run's ``best.pth`` are written to a temporary file next to the target; a fresh ``Model()`` loads
that file with ``load_pretrained_model(path)`` and its PSNR is measured again on the run's validation set, the way the
grader measures. Only if it matches the PSNR recorded when the weights were saved does the temporary file replace the
target (``os.replace``, atomic). On any mismatch or error the target is left exactly as it was.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from engine.config import RunConfig
from engine.data import Dataset, load_data
from engine.evaluate import predict_all
from engine.metrics import psnr
from engine.models import bestmodel_path, new_model
from engine.trainer import BEST_FILE, read_best_meta

from .store import Store, StoreError

TOLERANCE_DB = 0.01  # re-measured vs recorded PSNR; float noise across thread counts is far below this


class ExportError(StoreError):
    """The export was refused; the target was not touched."""


def _read_best(run: dict) -> tuple[bytes, float, int | None]:
    """The best weights' bytes with the PSNR recorded for exactly those bytes (the trainer may be replacing them
    while we read: best.json carries their hash)."""
    run_dir = Path(run["run_dir"])
    path = run_dir / BEST_FILE
    for _ in range(5):
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise ExportError(f"run {run['id']} has no best weights yet ({path} does not exist)") from None
        meta = read_best_meta(run_dir)
        if meta is None:
            break
        if meta.get("sha256") == hashlib.sha256(blob).hexdigest():
            return blob, float(meta["psnr"]), meta.get("step")
        time.sleep(0.1)  # caught between best.pth and best.json being replaced: read again
    else:
        raise ExportError(f"{path}: does not match the PSNR record in {run_dir / 'best.json'} "
                          "(the file was changed outside n2n-tui?)")
    if run.get("best_psnr") is None:
        raise ExportError(f"run {run['id']}: no PSNR was recorded for its best weights")
    return blob, float(run["best_psnr"]), run.get("best_step")


def export_run(store: Store, ref: str, to: str | os.PathLike | None = None, *,
               dataset: Dataset | None = None) -> dict:
    """Write run ``ref``'s best weights to ``to`` (default ``Miniproject_<engine>/bestmodel.pth``), verified.

    ``dataset`` may pass the run's already loaded data (the dashboard) to skip loading its validation set again.
    Returns ``{"run", "engine", "path", "psnr", "recorded_psnr", "step", "n_val", "data", "noise"}``.
    """
    run = store.get_run(ref, metrics=False, events=False)
    run_id, engine = run["id"], run["engine"]
    blob, recorded, step = _read_best(run)

    target = Path(to) if to is not None else bestmodel_path(engine)
    if target.is_dir():
        target = target / "bestmodel.pth"
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target}: folder {target.parent} does not exist")

    cfg = RunConfig.from_dict(run["config"])
    if dataset is None:
        dataset = load_data(cfg.data, noise=cfg.noise, seed=cfg.seed, n_train=1, n_val=cfg.n_val)
    val_in, val_tg = dataset.val_input[:cfg.n_val], dataset.val_target[:cfg.n_val]

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        model = new_model(engine)  # a fresh Model(), as the grader builds it
        try:
            model.load_pretrained_model(tmp)
        except (ValueError, RuntimeError, KeyError, EOFError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"run {run_id}: its best weights do not load in a fresh Model ({first[:160]}); "
                              f"{target} left untouched") from None
        measured = psnr(predict_all(model, val_in), val_tg)
        if not abs(measured - recorded) <= TOLERANCE_DB:
            raise ExportError(f"export refused: run {run_id}'s best weights measure {measured:.3f} dB on its "
                              f"{len(val_in)} validation images, but {recorded:.3f} dB was recorded; "
                              f"{target} left untouched")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a bestmodel.pth is handed in and read by others
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    store.record_checkpoint(run_id, "export", str(target), step, measured)
    store.add_event(run_id, "export", f"{target} ({measured:.2f} dB, verified by reloading)", step)
    return {"run": run_id, "engine": engine, "path": str(target), "psnr": measured, "recorded_psnr": recorded,
            "step": step, "n_val": len(val_in), "data": cfg.data, "noise": cfg.noise}
