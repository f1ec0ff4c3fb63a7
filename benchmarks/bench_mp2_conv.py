"""Miniproject_2's Conv2d against torch.nn.functional.conv2d + autograd: time of forward + backward (input, weight
and bias gradients) on the Model's own convolution shapes at batch 64 on 32x32 images, plus a 48->48 3x3 layer.
Prints the per-shape ratio ours / torch and their geometric mean (required <= 2.5, aim 1.2).

    python benchmarks/bench_mp2_conv.py [--batch 64] [--rounds 7] [--threads 2]

Numbers depend on the machine and on what else runs on it (the load average is printed with them). To be fair under
load, the two implementations alternate and each keeps its best time over the rounds.
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

from _common import load_avg
from Miniproject_2.model import Conv2d, Model

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=64)
p.add_argument("--rounds", type=int, default=7)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.set_grad_enabled(False)
dev = args.device


def sync():
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def model_conv_shapes(batch):
    """(conv, input shape) of every convolution in the Model's network on a batch of 32x32 images."""
    net = Model(device="cpu").net
    convs = []
    for block in net:
        inner = getattr(block, "conv", block)
        if isinstance(inner, Conv2d):
            convs.append(inner)
    shapes, x = [], torch.rand(batch, 3, 32, 32)
    for block in net:
        inner = getattr(block, "conv", block)
        if isinstance(inner, Conv2d):
            x_in = block.upsample.forward(x) if inner is not block else x
            shapes.append((inner, tuple(x_in.shape)))
        x = block.forward(x)
    return shapes


def case_from(conv, shape):
    return dict(shape=shape, out=conv.out_channels, k=conv.kernel_size, s=conv.stride, p=conv.padding,
                d=conv.dilation)


cases = [case_from(c, s) for c, s in model_conv_shapes(args.batch)]
cases.append(dict(shape=(args.batch, 48, 32, 32), out=48, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)))

print(f"torch {torch.__version__}, device {dev}, threads {torch.get_num_threads()}, batch {args.batch}, "
      f"load avg before {load_avg()}")
ratios = []
for c in cases:
    N, C, H, W = c["shape"]
    ours = Conv2d(C, c["out"], c["k"], c["s"], c["p"], c["d"]).to(dev)
    x = torch.randn(N, C, H, W, device=dev)
    w, b = ours.weight.clone(), ours.bias.clone()
    g = torch.randn_like(ours.forward(x))

    def run_torch():
        with torch.enable_grad():
            xx, ww, bb = (t.detach().requires_grad_(True) for t in (x, w, b))
            F.conv2d(xx, ww, bb, c["s"], c["p"], c["d"]).backward(g)
        sync()

    def run_ours():
        ours.forward(x)
        ours.backward(g)
        sync()

    best = {"torch": math.inf, "ours": math.inf}
    for fn in (run_torch, run_ours):  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in (("torch", run_torch), ("ours", run_ours)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    r = best["ours"] / best["torch"]
    ratios.append(r)
    print(f"  x {N}x{C}x{H}x{W} -> {c['out']} k{c['k'][0]}x{c['k'][1]} s{c['s'][0]} p{c['p'][0]}: "
          f"torch {best['torch'] * 1e3:7.1f} ms, ours {best['ours'] * 1e3:7.1f} ms, ratio {r:.2f}")
geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
print(f"geometric mean ratio ours/torch: {geo:.2f} (required <= 2.5, aim 1.2); load avg after {load_avg()}")
