"""The course grader's flow on a bestmodel.pth: Model(), load_pretrained_model, predict on the validation pairs in
batches of 100, one train epoch, predict again. The grader requires PSNR after the epoch above the noisy input's;
ours also requires it at least the PSNR before the epoch (train from loaded weights fine-tunes and keeps what is
best on a held-out slice of the training pairs: Miniproject_N/others/finetune.py). Exit status 3 if either fails.

    python scripts/grader_check.py --engine 2                                # Miniproject_2/bestmodel.pth, 50 000 pairs
    python scripts/grader_check.py --engine 1 --weights W.pth --n-train 2000
    python scripts/grader_check.py --engine 1 --data images:DIR --runs 3     # other photographs, three epochs

Data: any data spec (`sample` by default, `images:DIR`, `course:DIR`) with `--noise` (default `mix`), seed 0, like
the figures in docs/training.md; the course's own data is not in the repository. Each run starts again from the file;
runs differ in the training order and the held-out slice (torch seeds 0, 1, ...).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from engine.data import load_data
from engine.evaluate import evaluate
from engine.models import bestmodel_path, model_module


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", type=int, choices=(1, 2), required=True)
    p.add_argument("--weights", default=None, help="default: Miniproject_<engine>/bestmodel.pth")
    p.add_argument("--data", default="sample", help="data spec (default: sample)")
    p.add_argument("--noise", default="mix", help="noise of generated data (default: mix)")
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--runs", type=int, default=1, help="grader epochs, each from the file again")
    p.add_argument("--device", default=None, help="default: the Model's own choice")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.engine == 2:
        torch.set_grad_enabled(False)
    weights = Path(a.weights) if a.weights else bestmodel_path(a.engine)
    ds = load_data(a.data, noise=a.noise, seed=0, n_train=a.n_train, n_val=a.n_val)
    Model = model_module(a.engine).Model
    ok = True
    for run in range(a.runs):
        torch.manual_seed(run)
        model = Model() if a.device is None else Model(device=a.device)
        model.load_pretrained_model(weights)
        before = evaluate(model, ds.val_input, ds.val_target)
        print(f"engine {a.engine}, {weights}, config {model.config}, device {model.device}, torch threads "
              f"{torch.get_num_threads()}, data {a.data} noise {a.noise}, run {run + 1}/{a.runs}: val PSNR "
              f"{before['psnr']:.2f} dB (noisy {before['psnr_noisy']:.2f})", flush=True)
        t0 = time.time()
        model.train(ds.train_input, ds.train_target, num_epochs=1)
        took = time.time() - t0
        after = evaluate(model, ds.val_input, ds.val_target)
        good = after["psnr"] > after["psnr_noisy"] and after["psnr"] >= before["psnr"]
        ok &= good
        ft = getattr(model, "last_fine_tune", None)
        held = ""
        if ft:
            checks = ", ".join(f"{st}: z {z1:.1f}/{z2:.1f} {100 * g:+.2f}%" for st, z1, z2, g in ft["checks"])
            held = (f"; {ft['held_out']} held-out pairs, L1/L2 {ft['before'][0]:.5f}/{ft['before'][1]:.6f} -> "
                    f"{ft['after'][0]:.5f}/{ft['after'][1]:.6f}, kept the {ft['kept']} weights (checks at step "
                    f"{checks})")
        print(f"  one train epoch of {a.n_train} pairs: {took:.1f} s ({a.n_train / took:.0f} img/s){held}; val PSNR "
              f"{before['psnr']:.2f} -> {after['psnr']:.2f} dB ({after['psnr'] - before['psnr']:+.2f}), noisy "
              f"{after['psnr_noisy']:.2f} dB: {'PASS' if good else 'FAIL'}", flush=True)
    return 0 if ok else 3          # 3: a measured FAIL (a crash exits 1)


if __name__ == "__main__":
    sys.exit(main())
