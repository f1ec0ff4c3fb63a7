"""The course's block checks, as its published test script makes them, over many seeds and shapes.

The script builds a block on its own and compares it with torch.nn.functional through ``torch.allclose`` at the
default tolerances (rtol 1e-5, atol 1e-8): ``Conv2d(3, 3, 3)`` on ``torch.randn(1, 3, 32, 32)``, a Sigmoid, and a
Sequential of the two, and says more such checks come in the final one. A correct convolution that adds its products
in another order than PyTorch fails that check on some seeds, so the yardstick here is a textbook implementation
(unfold, one matrix product, bias added; fold for the input gradient): ours must pass wherever it does, and on the
shapes PyTorch computes with its own im2col code give exactly its numbers (Miniproject_2/others/exact.py).
"""
import collections
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.nn.functional import fold, unfold

from Miniproject_2.model import Conv2d, Sequential, Sigmoid, TransposeConv2d, Upsampling
from Miniproject_2.others.exact import native_order


@pytest.fixture(autouse=True)
def _cpu_float32():
    """The course runs these on the CPU, in float32, with torch's default threads and autograd on."""
    threads = torch.get_num_threads()
    torch.set_default_device("cpu")
    yield
    torch.set_num_threads(threads)


def test_the_course_block_checks_pass_for_200_seeds():
    failed = collections.Counter()
    for seed in range(200):
        torch.manual_seed(seed)
        x = torch.randn(1, 3, 32, 32)
        conv = Conv2d(3, 3, 3)
        failed["convolution"] += not torch.allclose(conv.forward(x), F.conv2d(x, conv.weight, conv.bias))
        sigmoid = Sigmoid()
        failed["sigmoid"] += not torch.allclose(sigmoid.forward(x), torch.sigmoid(x))
        seq = Sequential(conv, sigmoid)
        failed["sequential"] += not torch.allclose(seq.forward(x), F.conv2d(x, conv.weight, conv.bias).sigmoid())
    assert not +failed, f"failed seeds (of 200): {dict(failed)}"


# ------------------------------------------------------------------------------------- the textbook implementation

def textbook_conv(x, w, b, s, p):
    """y = W @ unfold(x) + b; backward: fold(W^T @ g), sum over images of g @ cols^T, sum of g."""
    N, O = x.shape[0], w.shape[0]
    cols = unfold(x, w.shape[2:], padding=p, stride=s)
    Ho, Wo = ((n + 2 * p - k) // s + 1 for n, k in zip(x.shape[2:], w.shape[2:]))
    y = (w.reshape(O, -1) @ cols + b.view(1, O, 1)).view(N, O, Ho, Wo)

    def backward(g):
        gm = g.reshape(N, O, -1)
        dx = fold(w.reshape(O, -1).t() @ gm, x.shape[2:], w.shape[2:], padding=p, stride=s)
        return dx, (gm @ cols.transpose(1, 2)).sum(0).view_as(w), g.sum((0, 2, 3))
    return y, backward


def textbook_transpose_conv(x, w, b, s, p):
    """y = fold(W^T @ x) + b; backward: W @ unfold(g), sum over images of x @ unfold(g)^T, sum of g."""
    N, C = x.shape[:2]
    k = w.shape[2:]
    size = [(n - 1) * s - 2 * p + kk for n, kk in zip(x.shape[2:], k)]
    y = fold(w.reshape(C, -1).t() @ x.reshape(N, C, -1), size, k, padding=p, stride=s) + b.view(1, -1, 1, 1)

    def backward(g):
        gcols = unfold(g, k, padding=p, stride=s)
        dx = (w.reshape(C, -1) @ gcols).view_as(x)
        return dx, (x.reshape(N, C, -1) @ gcols.transpose(1, 2)).sum(0).view_as(w), g.sum((0, 2, 3))
    return y, backward


def textbook_upsampling(x, w, b, s, p):
    """The textbook convolution of the nearest-upsampled input; dx sums each 2x2 block of the convolution's dx."""
    N, C, H, W = x.shape
    y, conv_backward = textbook_conv(F.interpolate(x, scale_factor=2), w, b, s, p)

    def backward(g):
        dxu, dw, db = conv_backward(g)
        return dxu.view(N, C, H, 2, W, 2).sum((3, 5)), dw, db
    return y, backward


BLOCKS = {
    "Conv2d": (Conv2d, lambda x, w, b, s, p: F.conv2d(x, w, b, s, p), textbook_conv),
    "TransposeConv2d": (TransposeConv2d, lambda x, w, b, s, p: F.conv_transpose2d(x, w, b, s, p),
                        textbook_transpose_conv),
    "Upsampling": (lambda C, O, k, stride, padding: Upsampling(C, O, k, stride=stride, padding=padding),
                   lambda x, w, b, s, p: F.conv2d(F.interpolate(x, scale_factor=2), w, b, s, p), textbook_upsampling),
}

# (block, N, C, O, kernel, stride, padding, H=W): a grid of small layers (one image and two: PyTorch computes the
# first with its own im2col code, the second with oneDNN), and the layers of the prescribed network (Model's
# default and shipped widths) on one image and on four
GRID = [(block, N, C, O, k, s, p, H)
        for block in BLOCKS for N in (1, 2) for C, O in ((3, 3), (3, 16), (16, 3), (16, 32))
        for k in (1, 3, 5) for s in (1, 2) for p in (0, 1) for H in (8, 32)
        if not (block == "Upsampling" and s == 2) and not (block == "TransposeConv2d" and p >= k)]
GRID += [(block, N, C, O, 3, s, 1, H) for N in (1, 4) for c1, c2 in ((64, 96), (128, 192))
         for block, C, O, s, H in (("Conv2d", 3, c1, 2, 32), ("Conv2d", c1, c2, 2, 16),
                                   ("Upsampling", c2, c1, 1, 8), ("Upsampling", c1, 3, 1, 16))]
QUANTITIES = ("output", "input gradient", "weight gradient", "bias gradient")


def _check(case, seed):
    """(ours, textbook) matches of the four quantities with torch.allclose, and whether ours equals torch exactly."""
    block, N, C, O, k, s, p, H = case
    make, functional, textbook = BLOCKS[block]
    torch.manual_seed(seed)
    layer = make(C, O, k, stride=s, padding=p)
    x = torch.randn(N, C, H, H)
    y = layer.forward(x)
    g = torch.randn_like(y)
    dx = layer.backward(g)
    params = layer.conv if block == "Upsampling" else layer
    ours = (y, dx, params.weight_grad, params.bias_grad)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, layer.weight, layer.bias)]
    with torch.enable_grad():
        ref = functional(*leaves, s, p)
        ref.backward(g)
    ref = (ref.detach(), *(t.grad for t in leaves))
    ty, t_backward = textbook(x, layer.weight, layer.bias, s, p)
    text = (ty, *t_backward(g))
    return ([torch.allclose(a, r) for a, r in zip(ours, ref)], [torch.allclose(a, r) for a, r in zip(text, ref)],
            all(torch.equal(a, r) for a, r in zip(ours, ref)))


def grid_counts(seeds: int = 2) -> tuple[collections.Counter, list]:
    """Over GRID x seeds: how often ours and the textbook pass each quantity's check, and the cases where ours is not
    torch's numbers exactly although PyTorch adds in im2col order there."""
    passes = collections.Counter()
    not_exact = []
    for case, seed in itertools.product(GRID, range(seeds)):
        ours, text, exact = _check(case, seed)
        for q, a, b in zip(QUANTITIES, ours, text):
            passes[case[0], q, "ours"] += a
            passes[case[0], q, "textbook"] += b
        block, N, C, _, k, _, _, H = case
        size = 2 * H if block == "Upsampling" else H            # what the convolution itself sees
        if native_order(torch.empty(N, C, size, size), (k, k)) and not exact:
            not_exact.append((case, seed))
    return passes, not_exact


def test_blocks_pass_the_course_check_wherever_a_textbook_implementation_does():
    """Over the grid, two seeds a shape: each block's output and gradients pass torch.allclose at least as often as
    the textbook implementation's, and are torch's numbers exactly where PyTorch adds in im2col order."""
    passes, not_exact = grid_counts(2)
    worse = {f"{b} {q}": (passes[b, q, "ours"], passes[b, q, "textbook"]) for b in BLOCKS for q in QUANTITIES
             if passes[b, q, "ours"] < passes[b, q, "textbook"]}
    assert not worse, f"checks passed (ours, textbook) of {2 * len(GRID)}: {worse}"
    assert not not_exact, f"not torch's numbers on its im2col path: {not_exact[:5]}"
    # the grid is not trivial: somewhere the textbook order fails where ours passes
    assert any(passes[b, q, "ours"] > passes[b, q, "textbook"] for b in BLOCKS for q in QUANTITIES)


if __name__ == "__main__":   # the table in docs/course-checks.md: python tests/test_course_blocks.py [SEEDS]
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    counts, missed = grid_counts(n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(GRID)} shapes x {n} seeds; "
          f"torch.allclose passes, ours / textbook:")
    for b in BLOCKS:
        print(f"  {b:16s}" + "  ".join(f"{q} {counts[b, q, 'ours']}/{counts[b, q, 'textbook']}" for q in QUANTITIES))
    print(f"not exactly torch's numbers on its im2col path: {len(missed)}")
