"""The course grader's flow on a bestmodel.pth: Model(), load_pretrained_model, predict on the validation pairs in
batches of 100, one train epoch, predict again; PSNR after the epoch must beat the noisy input's (exit status 3
if it does not).

    python scripts/grader_check.py --engine 2                                # Miniproject_2/bestmodel.pth, 50 000 pairs
    python scripts/grader_check.py --engine 1 --weights W.pth --n-train 2000

Data: `sample`/`mix` (seed 0), like the README's figures; the course's own data is not in the repository.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data import load_data  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.models import bestmodel_path, model_module  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", type=int, choices=(1, 2), required=True)
    p.add_argument("--weights", default=None, help="default: Miniproject_<engine>/bestmodel.pth")
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--device", default=None, help="default: the Model's own choice")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.engine == 2:
        torch.set_grad_enabled(False)
    weights = Path(a.weights) if a.weights else bestmodel_path(a.engine)
    ds = load_data("sample", noise="mix", seed=0, n_train=a.n_train, n_val=a.n_val)
    Model = model_module(a.engine).Model
    model = Model() if a.device is None else Model(device=a.device)
    model.load_pretrained_model(weights)
    before = evaluate(model, ds.val_input, ds.val_target)
    print(f"engine {a.engine}, {weights}, config {model.config}, device {model.device}, torch threads "
          f"{torch.get_num_threads()}: val PSNR {before['psnr']:.2f} dB (noisy {before['psnr_noisy']:.2f})",
          flush=True)
    t0 = time.time()
    model.train(ds.train_input, ds.train_target, num_epochs=1)
    took = time.time() - t0
    after = evaluate(model, ds.val_input, ds.val_target)
    ok = after["psnr"] > after["psnr_noisy"]
    print(f"one train epoch of {a.n_train} pairs: {took:.1f} s ({a.n_train / took:.0f} img/s); val PSNR after "
          f"{after['psnr']:.2f} dB vs noisy {after['psnr_noisy']:.2f} dB: {'PASS' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 3          # 3: a measured FAIL (a crash exits 1)


if __name__ == "__main__":
    sys.exit(main())
