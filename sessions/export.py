"""Export a run's best weights as a grader-ready ``bestmodel.pth``, proven by reloading.

The bytes of the run's ``best.pth`` are written to a temporary file next to the target; a fresh ``Model()`` loads
that file with ``load_pretrained_model(path)`` and its PSNR is measured again on the run's validation set, the way the
grader measures. Only if it matches the PSNR recorded when the weights were saved does the temporary file replace the
target (``os.replace``, atomic). On any mismatch or error the target is left exactly as it was, and so it is when
the target already holds better weights, unless the caller forces it.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from engine.config import RunConfig
from engine.data import Dataset, load_data
from engine.errors import first_line
from engine.evaluate import predict_all
from engine.fileio import SymlinkError, check_target, read_nofollow, temp_beside, umask, write_error
from engine.metrics import psnr
from engine.models import bestmodel_path, new_model
from engine.train_state import BEST_FILE, read_best_meta

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
            blob = read_nofollow(path)
        except FileNotFoundError:
            raise ExportError(f"run {run['id']} has no best weights yet ({path} does not exist)") from None
        except OSError as e:  # a symbolic link planted there included
            raise ExportError(str(e) if isinstance(e, SymlinkError) else f"{path}: {e.strerror}") from None
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


class BetterTargetError(ExportError):
    """The target already holds weights that measure better; ``force`` replaces them anyway."""

    def __init__(self, message: str, theirs: float, ours: float):
        super().__init__(message)
        self.theirs, self.ours = theirs, ours


def measure(engine: int, path: str | os.PathLike, val_in, val_tg) -> float:
    """PSNR of the weights in ``path`` loaded by a fresh ``Model()`` of ``engine``, measured as the grader does.
    Raises ValueError (one line) when they do not load."""
    model = new_model(engine)  # a fresh Model(), as the grader builds it
    try:
        model.load_pretrained_model(str(path))
    except (ValueError, RuntimeError, KeyError, EOFError, TypeError, AttributeError, IndexError) as e:
        first = first_line(e)
        raise ValueError(first[:200]) from None
    return psnr(predict_all(model, val_in), val_tg)


def export_run(store: Store, ref: str, to: str | os.PathLike | None = None, *,
               dataset: Dataset | None = None, force: bool = False) -> dict:
    """Write run ``ref``'s best weights to ``to`` (default ``Miniproject_<engine>/bestmodel.pth``), verified.

    An existing target is replaced only if it is a regular file and its weights measure no better than the run's on
    the run's validation images (``BetterTargetError`` otherwise), or if it does not hold this engine's weights at
    all (``ExportError``); ``force`` replaces it in both cases. Weights no better than the noisy input itself are
    refused (``ExportError``) unless ``force``. Devices, FIFOs, sockets and folders are never replaced.
    ``dataset`` may pass the run's already loaded data (the dashboard) to skip loading its validation set again.
    Returns ``{"run", "engine", "path", "psnr", "recorded_psnr", "replaced_psnr", "step", "n_val", "data", "noise",
    "unrecorded"}``; ``unrecorded`` says why the store could not note the export (None when it did).
    """
    run = store.get_run(ref, metrics=False, events=False)
    run_id, engine = run["id"], run["engine"]
    target = check_target(to if to is not None else bestmodel_path(engine), "--to")
    blob, recorded, step = _read_best(run)

    cfg = RunConfig.from_dict(run["config"])
    if dataset is None:
        dataset = load_data(cfg.data, noise=cfg.noise, seed=cfg.seed, n_train=1, n_val=cfg.n_val)
    val_in, val_tg = dataset.val_input[:cfg.n_val], dataset.val_target[:cfg.n_val]

    try:
        fd, tmp = temp_beside(target)   # (a leftover of an export killed mid-way goes first)
    except OSError as e:
        raise write_error(e, target) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        try:
            measured = measure(engine, tmp, val_in, val_tg)
        except ValueError as e:
            raise ExportError(f"run {run_id}: its best weights do not load in a fresh Model ({e}); "
                              f"{target} left untouched") from None
        if not abs(measured - recorded) <= TOLERANCE_DB:
            raise ExportError(f"export refused: run {run_id}'s best weights measure {measured:.3f} dB on its "
                              f"{len(val_in)} validation images, but {recorded:.3f} dB was recorded; "
                              f"{target} left untouched")
        noisy = psnr(val_in, val_tg)
        if measured <= noisy and not force:  # the identity would do better: a grader would mark them down
            raise ExportError(f"export refused: run {run_id}'s best weights measure {measured:.2f} dB, no better than "
                              f"the noisy input itself ({noisy:.2f} dB) on its {len(val_in)} validation images; "
                              f"{target} left untouched (--force exports them anyway)")
        theirs = None
        if target.exists():
            try:
                theirs = measure(engine, target, val_in, val_tg)
            except ValueError as e:
                if not force:
                    raise ExportError(f"{target} exists and does not hold engine-{engine} weights ({e}); "
                                      "left untouched (--force replaces it)") from None
            if theirs is not None and theirs > measured + TOLERANCE_DB and not force:
                raise BetterTargetError(
                    f"{target} already scores {theirs:.2f} dB, better than run {run_id}'s {measured:.2f} dB on the "
                    f"same {len(val_in)} validation images; left untouched (--force replaces it)", theirs, measured)
        check_target(target, "--to")  # still a regular file (or free) after the measuring
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; a deliverable follows the umask as any file
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise write_error(e, target) from None
        raise
    # the file is written and verified: that is the export. Noting it in the store is a courtesy that a full or
    # read-only runs folder must not turn into a failure
    unrecorded = None
    try:
        store.record_checkpoint(run_id, "export", str(target), step, measured)
        replaced = f", replacing {theirs:.2f} dB" if theirs is not None else ""
        store.add_event(run_id, "export", f"{target} ({measured:.2f} dB, verified by reloading{replaced})", step)
    except StoreError as e:
        unrecorded = str(e)
    return {"run": run_id, "engine": engine, "path": str(target), "psnr": measured, "recorded_psnr": recorded,
            "replaced_psnr": theirs, "step": step, "n_val": len(val_in), "data": cfg.data, "noise": cfg.noise,
            "unrecorded": unrecorded}
