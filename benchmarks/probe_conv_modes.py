"""Is this machine in the "slow mode" that made Miniproject_2's small Winograd layers at 2 threads take twice their
usual time? Each of ``--processes`` fresh Python processes times one layer's forward+backward (ours and torch's
``F.conv2d`` + autograd on the same tensors, one call of each in turn) and reports the median per call and the CPU
time it burned, after measuring the core-to-core round trip of a cache line (``_common.core_to_core_ns``; needs a C
compiler).

    python benchmarks/probe_conv_modes.py                          # 64x32x16x16 -> 32, 2 threads, 8 processes
    python benchmarks/probe_conv_modes.py --shape 64,48,16,48 --threads 1
    git archive REV Miniproject_2 | tar -x -C DIR && python benchmarks/probe_conv_modes.py --code DIR   # old vs new

What the modes are: where the host runs this VM's two CPUs. On the 2-core development machine (AMD EPYC, 2026-11-27)
the round trip read 55-130 ns at some times and 320-420 ns at others (the two CPUs on different dies), each state
lasting seconds to minutes and switching in the middle of a process too. Before the layer kept each thread on its own
part of the batch (others/winograd.py, "Threads"), ours took 6.0-6.9 ms per call in the first state and 13.6-14.8 ms
in the second, with both threads busy throughout (torch: 4.4-5.6 ms, and 7.4-8.5 ms at times of its own that did not
follow the round trip); since, 5.5-6.1 and 6.8-7.6 ms.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import core_to_core_ns, header, load_avg

CHILD = r"""
import importlib, importlib.util, json, resource, statistics, sys, time
import torch, torch.nn.functional as F
from Miniproject_2.model import Conv2d   # this checkout's: the child runs in its root (python -c: cwd first)
torch.set_num_threads(int(sys.argv[1]))
torch.set_grad_enabled(False)
N, C, H, O = (int(v) for v in sys.argv[2].split(","))
x, g = torch.randn(N, C, H, H), torch.randn(N, O, H, H)
m = Conv2d(C, O, 3, padding=1).use_fast_paths()   # the ops Model's network trains with
w, b = m.weight.clone(), m.bias.clone()

def run(layer):
    def f():
        layer.forward(x)
        layer.backward(g)
    return f

def theirs():
    with torch.enable_grad():
        xx, ww, bb = (t.detach().requires_grad_(True) for t in (x, w, b))
        F.conv2d(xx, ww, bb, 1, 1).backward(g)

fns = {"ours": run(m), "torch": theirs}
if sys.argv[4]:  # another Miniproject_2 (an export of an older commit), loaded under its own package name
    pkg = sys.argv[4] + "/Miniproject_2"
    spec = importlib.util.spec_from_file_location("mp2_other", pkg + "/__init__.py", submodule_search_locations=[pkg])
    sys.modules["mp2_other"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["mp2_other"])
    other = importlib.import_module("mp2_other.model").Conv2d(C, O, 3, padding=1)
    if hasattr(other, "use_fast_paths"):   # code from before blocks built directly added as PyTorch does
        other.use_fast_paths()
    other.weight, other.bias = w.clone(), b.clone()
    fns["other"] = run(other)
for f in fns.values():
    for _ in range(5):
        f()
times, cpu = {k: [] for k in fns}, {k: 0.0 for k in fns}
for _ in range(int(sys.argv[3])):  # one call of each in turn: a change of state mid-process hits all of them
    for name, f in fns.items():
        r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        f()
        times[name].append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu[name] += r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
print(json.dumps({k: (statistics.median(v), cpu[k] / len(v)) for k, v in times.items()}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="64,32,16,32", help="N,C,H,O of a 3x3 stride-1 padding-1 layer")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--processes", type=int, default=8)
    p.add_argument("--calls", type=int, default=20, help="timed calls per implementation and process")
    p.add_argument("--code", default="", help="also time the Miniproject_2 found in this folder (e.g. an export of an "
                   "older commit) in the same processes, as 'other'")
    args = p.parse_args()
    root = str(Path(__file__).resolve().parent.parent)
    print(header(f"layer {args.shape}, {args.threads} threads in each of {args.processes} processes"), flush=True)
    ours = []
    for i in range(args.processes):
        c2c = core_to_core_ns()
        done = subprocess.run([sys.executable, "-c", CHILD, str(args.threads), args.shape, str(args.calls),
                               str(Path(args.code).resolve()) if args.code else ""],
                              capture_output=True, text=True, check=True, cwd=root)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        ours.append(r["ours"][0])
        print(f"  process {i + 1}: ours {r['ours'][0] * 1e3:6.2f} ms (CPU {r['ours'][1] * 1e3:6.2f} ms)   "
              f"torch {r['torch'][0] * 1e3:6.2f} ms (CPU {r['torch'][1] * 1e3:6.2f} ms)"
              + (f"   other {r['other'][0] * 1e3:6.2f} ms" if "other" in r else "")
              + ("" if c2c is None else f"   core-to-core {c2c:4.0f} ns before"), flush=True)
    print(f"ours: median {statistics.median(ours) * 1e3:.2f} ms, fastest {min(ours) * 1e3:.2f}, slowest "
          f"{max(ours) * 1e3:.2f}; load average after {load_avg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
