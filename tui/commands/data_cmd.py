"""``n2n-tui data make``: write any data source in the course's exact format (train_data.pkl, val_data.pkl)."""
from __future__ import annotations

import os
from pathlib import Path

from engine.data import load_data, size_problem
from engine.fileio import atomic_torch_save, check_target
from engine.threads import use_threads
from tui.errors import UsageError
from tui.parser import threads_setting

FILES = ("train_data.pkl", "val_data.pkl")


def run(args) -> int:
    use_threads(threads_setting(args))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {out}: not writable")
    existing = [out / f for f in FILES if (out / f).exists()]
    if existing and not args.force:
        raise UsageError(f"--out {out}: {' and '.join(f.name for f in existing)} already there (perhaps the course's "
                         "own data); left untouched (--force replaces)")
    targets = [check_target(out / f) for f in FILES]  # regular files or free names only
    if not args.source.startswith("course:"):
        for option, n in (("--n-train", args.n_train), ("--n-val", args.n_val)):
            problem = size_problem(n)
            if problem:
                raise UsageError(f"{option} {n}: {problem}")
    ds = load_data(args.source, noise=args.noise, seed=args.seed, n_train=args.n_train, n_val=args.n_val)
    # exactly what the course ships: tuples of two uint8 tensors, N x 3 x 32 x 32
    atomic_torch_save((ds.train_input.contiguous(), ds.train_target.contiguous()), targets[0])
    atomic_torch_save((ds.val_input.contiguous(), ds.val_target.contiguous()), targets[1])
    print(f"wrote {out / 'train_data.pkl'} ({len(ds.train_input)} pairs) and {out / 'val_data.pkl'} "
          f"({len(ds.val_input)} pairs) from {ds.source}" + (f" with {ds.noise} noise" if ds.noise else ""))
    return 0
