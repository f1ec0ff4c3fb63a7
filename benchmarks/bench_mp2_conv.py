"""Miniproject_2's Conv2d against torch.nn.functional.conv2d + autograd: time of forward + backward (input, weight and
bias gradients) at batch 64 on every convolution of the prescribed network (32x32 images; widths 64/96/64 unless
--net says otherwise) and on 3x3 stride-1 layers of 32, 48, 64 and 96 channels at 16 and 32 px. Prints the
per-shape ratio ours / torch and their geometric mean (target: geometric mean <= 1.2, no shape above 1.5).

    python benchmarks/bench_mp2_conv.py                    # torch's default thread count
    python benchmarks/bench_mp2_conv.py --threads 1
    python benchmarks/bench_mp2_conv.py --accuracy         # also: max abs error vs float64, ours and torch's
    python benchmarks/bench_mp2_conv.py --code DIR         # time the Miniproject_2 found in DIR (an older export)
    python benchmarks/bench_mp2_conv.py --net 64,96,64 --net 128,192,128   # the layers of two networks

Timings depend on what else runs on the machine: the load average is printed before and after, the two
implementations alternate within every repeat, and each reports the median over the repeats. ``--wait-quiet 1``
waits (up to 10 min) for the 1-minute load average to fall below 1 before starting. On a virtual machine, where
the host runs its CPUs matters too: the core-to-core round trip is printed before and after (it needs a C
compiler; see _common.core_to_core_ns). On the 2-core development machine it read 55-130 ns at some times and
320-420 ns at others (the two CPUs on different dies), and the 2-thread Winograd layers were slower in the second state
(twice as slow before they kept each thread on its own part of the batch; see probe_conv_modes.py).
"""
import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import core_to_core_ns, header, interleaved, load_avg, print_core_to_core, set_threads, wait_quiet

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--batch", type=int, default=64)
p.add_argument("--repeats", type=int, default=7)
p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
p.add_argument("--device", default="cpu")
p.add_argument("--accuracy", action="store_true", help="print the max abs error of both against float64")
p.add_argument("--code", default=None, help="import Miniproject_2 from this folder instead of the repository")
p.add_argument("--wait-quiet", type=float, default=0, help="wait until the load average is below this")
p.add_argument("--only", default=None, help="comma-separated substrings: run only shapes whose label matches")
p.add_argument("--net", action="append", default=None,
               help="c1,c2,c3 of a prescribed network whose layers to time (repeatable; default 64,96,64: the "
                    "widths of the first shipped weights and of the issue's reference measurements)")
args = p.parse_args()
args.net = args.net or ["64,96,64"]
if args.code:
    sys.path.insert(0, str(Path(args.code).resolve()))
from Miniproject_2.model import Conv2d  # noqa: E402  (after --code)


def layer(C, O, k, s, pad):
    """Our Conv2d with the ops Model's network trains with (an export from before blocks built directly added as
    PyTorch does has no switch: it always ran them)."""
    conv = Conv2d(C, O, k, s, pad)
    if hasattr(conv, "use_fast_paths"):
        conv.use_fast_paths()
    return conv.to(dev)


set_threads(args.threads)
torch.set_grad_enabled(False)
dev = args.device


def sync():
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def network_cases(c1, c2, c3, batch):
    """(in, out, kernel, stride, padding, input shape) of the four convolutions of the prescribed network
    Conv(3->c1, s2), Conv(c1->c2, s2), Upsampling(c2->c3), Upsampling(c3->3), 3x3 kernels, on 32x32 images."""
    k, s1, s2, p1 = (3, 3), (1, 1), (2, 2), (1, 1)
    return [(3, c1, k, s2, p1, (batch, 3, 32, 32)), (c1, c2, k, s2, p1, (batch, c1, 16, 16)),
            (c2, c3, k, s1, p1, (batch, c2, 16, 16)), (c3, 3, k, s1, p1, (batch, c3, 32, 32))]


cases = []
for net in args.net:
    for case in network_cases(*(int(v) for v in net.split(",")), args.batch):
        if case not in cases:
            cases.append(case)
for size in (16, 32):
    for c in (32, 48, 64, 96):
        case = (c, c, (3, 3), (1, 1), (1, 1), (args.batch, c, size, size))
        if case not in cases:
            cases.append(case)


def label(case):
    C, O, k, s, pad, shape = case
    return f"{'x'.join(map(str, shape))} -> {O} k{k[0]}x{k[1]} s{s[0]} p{pad[0]}"


if args.only:
    cases = [c for c in cases if any(o in label(c) for o in args.only.split(","))]


def accuracy(case):
    """max |ours - float64| and max |torch float32 - float64| over y, dx, dw (and the largest |value| of each)."""
    C, O, k, s, pad, shape = case
    conv = layer(C, O, k, s, pad)
    x = torch.randn(shape, device=dev)
    g = torch.randn_like(conv.forward(x))
    y = conv.forward(x)
    dx = conv.backward(g)
    dw = conv.weight_grad.clone()
    with torch.enable_grad():
        xr, wr, br = (t.detach().double().requires_grad_(True) for t in (x, conv.weight, conv.bias))
        yr = F.conv2d(xr, wr, br, s, pad)
        yr.backward(g.double())
        xt, wt, bt = (t.detach().requires_grad_(True) for t in (x, conv.weight, conv.bias))
        yt = F.conv2d(xt, wt, bt, s, pad)
        yt.backward(g)
    out = []
    for name, a, t, r in (("y", y, yt, yr), ("dx", dx, xt.grad, xr.grad), ("dw", dw, wt.grad, wr.grad)):
        r = r.detach()
        out.append(f"{name} {(a.double() - r).abs().max().item():.1e}/{(t.double() - r).abs().max().item():.1e} "
                   f"(of {r.abs().max().item():.0f})")
    return "  ".join(out)


print(header(f"device {dev}, batch {args.batch}, {args.repeats} interleaved repeats (median)"), flush=True)
if args.wait_quiet:
    wait_quiet(args.wait_quiet)
load_before, c2c_before = load_avg(), core_to_core_ns()
ratios = []
for case in cases:
    C, O, k, s, pad, shape = case
    ours = layer(C, O, k, s, pad)
    x = torch.randn(shape, device=dev)
    w, b = ours.weight.clone(), ours.bias.clone()
    g = torch.randn_like(ours.forward(x))

    def run_torch():
        with torch.enable_grad():
            xx, ww, bb = (t.detach().requires_grad_(True) for t in (x, w, b))
            F.conv2d(xx, ww, bb, s, pad).backward(g)
        sync()

    def run_ours():
        ours.forward(x)
        ours.backward(g)
        sync()

    t = interleaved({"torch": run_torch, "ours": run_ours}, args.repeats)
    r = t["ours"] / t["torch"]
    ratios.append(r)
    kind = type(getattr(ours, "op", None)).__name__ if getattr(ours, "op", None) is not None else "-"
    print(f"  {label(case):<34} torch {t['torch'] * 1e3:7.2f} ms  ours {t['ours'] * 1e3:7.2f} ms  ratio {r:.2f}  "
          f"({kind})", flush=True)
    if args.accuracy:
        print(f"      max abs error vs float64, ours/torch float32: {accuracy(case)}", flush=True)
geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
print(f"geometric mean ratio ours/torch over {len(ratios)} shapes: {geo:.2f}, worst {max(ratios):.2f} "
      f"(target <= 1.2, none above 1.5); load average {load_before} before, {load_avg()} after")
print_core_to_core(c2c_before)
