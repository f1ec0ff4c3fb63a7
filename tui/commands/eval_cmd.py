"""``n2n-tui eval``: PSNR of a checkpoint on a data source's validation pairs."""
from __future__ import annotations

import json
from pathlib import Path

from engine.data import default_spec, load_data, parse_spec, size_problem
from engine.evaluate import evaluate
from engine.models import bestmodel_path, new_model
from tui.errors import UsageError


def run(args) -> int:
    spec = args.data or default_spec()
    parse_spec(spec)  # a bad spec is reported before anything is loaded
    weights = Path(args.weights) if args.weights else bestmodel_path(args.engine)
    if not weights.is_file():
        raise UsageError(f"--weights {weights}: no such file")
    if args.n_val is not None and not spec.startswith("course:") and size_problem(args.n_val):
        raise UsageError(f"--n-val {args.n_val}: {size_problem(args.n_val)}")
    ds = load_data(spec, noise=args.noise, seed=args.seed, n_train=1, n_val=args.n_val)
    model = new_model(args.engine, args.device)
    try:
        model.load_pretrained_model(str(weights))
    except (ValueError, RuntimeError, KeyError, EOFError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(msg if msg.startswith(str(weights)) else f"--weights {weights}: {msg}") from None
    r = evaluate(model, ds.val_input, ds.val_target)
    r.update(engine=args.engine, weights=str(weights), data=ds.source, noise=ds.noise)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"engine {args.engine}  {weights}  on {ds.source}" + (f" ({ds.noise})" if ds.noise else "")
              + f", {r['n']} images")
        print(f"  noisy input  PSNR {r['psnr_noisy']:6.2f} dB   SSIM {r['ssim_noisy']:.3f}")
        print(f"  denoised     PSNR {r['psnr']:6.2f} dB   SSIM {r['ssim']:.3f}   "
              f"(gain {r['psnr'] - r['psnr_noisy']:+.2f} dB)")
    return 0
