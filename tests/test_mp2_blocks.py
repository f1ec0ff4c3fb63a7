"""Miniproject_2's blocks against PyTorch autograd (float64), its optimizers against torch.optim, and its import rule.

N2N_TEST_DEVICE=cuda runs every check here on that device (tensors are made there by default): the blocks must give
the same results there with no code change.
"""
import ast
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from Miniproject_2.model import (
    MSE,
    SGD,
    Adam,
    Conv2d,
    L1Loss,
    LeakyReLU,
    NearestUpsampling,
    ReLU,
    Sequential,
    Sigmoid,
    TransposeConv2d,
    Upsampling,
)

MP2 = Path(__file__).resolve().parent.parent / "Miniproject_2"
TOL = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(autouse=True)
def _setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    prev = torch.is_grad_enabled()
    torch.set_grad_enabled(False)  # the framework must work with autograd globally off
    torch.set_default_device(os.environ.get("N2N_TEST_DEVICE", "cpu"))
    yield
    torch.set_default_device("cpu")
    torch.set_grad_enabled(prev)


def autograd(fn, *tensors, grad_out):
    """Reference: run fn on copies that require grad, backpropagate grad_out; returns (output, [grads])."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    with torch.enable_grad():
        y = fn(*leaves)
        y.backward(grad_out)
    return y.detach(), [l.grad for l in leaves]


def check_layer(layer, x, ref_fn):
    """forward, backward (input and every parameter gradient) and accumulation over two backward calls."""
    layer.to(torch.float64)
    params = [p for p, _ in layer.param()]
    y = layer.forward(x)
    g1 = torch.randn_like(y)
    y_ref, grads = autograd(ref_fn, x, *params, grad_out=g1)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, **TOL)
    dx = layer.backward(g1)
    torch.testing.assert_close(dx, grads[0], **TOL)
    for (_, g), ref in zip(layer.param(), grads[1:]):
        torch.testing.assert_close(g, ref, **TOL)
    # a second forward/backward accumulates the parameter gradients
    x2 = torch.randn_like(x)
    layer.forward(x2)
    g2 = torch.randn_like(y)
    _, grads2 = autograd(ref_fn, x2, *params, grad_out=g2)
    layer.backward(g2)
    for (_, g), a, b in zip(layer.param(), grads[1:], grads2[1:]):
        torch.testing.assert_close(g, a + b, **TOL)
    layer.zero_grad()
    assert all((g == 0).all() for _, g in layer.param())


# (N, C, O, H, W, kernel, stride, padding, dilation, bias)
CONV_CASES = [
    (1, 3, 3, 8, 8, 3, 1, 0, 1, True),                      # the course's example
    (3, 3, 4, 9, 11, (2, 3), (2, 3), 0, 1, True),           # non-square kernel and stride
    (2, 4, 5, 7, 7, 1, 1, 0, 1, True),                      # 1x1
    (5, 2, 3, 10, 9, 3, 1, 1, 1, False),                    # no bias, odd width
    (2, 3, 2, 13, 10, 3, 2, 1, 1, True),                    # stride 2, odd sizes
    (1, 2, 3, 11, 12, (3, 2), 1, (2, 1), (2, 1), True),     # dilation + non-square padding, stride 1
    (4, 3, 2, 12, 11, 3, (1, 2), (1, 0), (1, 2), True),     # mixed stride
    (2, 5, 6, 9, 9, 5, 3, 2, 2, True),                      # big kernel, stride 3, dilation 2
    (3, 6, 3, 10, 7, 4, 2, 1, 1, True),                     # even kernel, stride 2
    (2, 2, 2, 5, 6, 3, 1, 3, 1, True),                      # padding larger than the kernel
    (1, 1, 2, 3, 3, 3, 1, 0, 1, True),                      # output 1x1
]


def random_conv_cases(n, seed):
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        k = (rng.randint(1, 4), rng.randint(1, 4))
        s = (rng.randint(1, 3), rng.randint(1, 3)) if rng.random() < 0.6 else (1, 1)
        d = (rng.randint(1, 2), rng.randint(1, 2))
        p = (rng.randint(0, 2), rng.randint(0, 2))
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        if any((n + 2 * pp - dd * (kk - 1) - 1) < 0 for n, pp, dd, kk in zip((h, w), p, d, k)):
            continue
        cases.append((rng.randint(1, 5), rng.randint(1, 4), rng.randint(1, 4), h, w, k, s, p, d, rng.random() < 0.8))
    return cases


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
@pytest.mark.parametrize("case", CONV_CASES + random_conv_cases(25, 1))
def test_conv2d_matches_torch(case, fast):
    """Both ways a Conv2d computes: as PyTorch adds (a block built directly) and the fast ops (Model's network)."""
    N, C, O, H, W, k, s, p, d, bias = case
    conv = Conv2d(C, O, k, stride=s, padding=p, dilation=d, bias=bias).use_fast_paths(fast)
    x = torch.randn(N, C, H, W, dtype=torch.float64)
    check_layer(conv, x, lambda x, w, b=None: F.conv2d(x, w, b, s, p, d))


@pytest.mark.parametrize("policy", [(x, g) for x in ("flat", "full") for g in ("flat", "row", "full")])
@pytest.mark.parametrize("case", [(2, 3, 4, 9, 8, 3, 1, 1, 1, True),
                                  (3, 2, 3, 7, 11, (2, 3), 1, (0, 2), (2, 1), False)])
def test_stride1_paths(case, policy, monkeypatch):
    """The stride-1 path gathers x and/or the output gradient into an im2col when a side has few channels; force
    each combination, for Conv2d and TransposeConv2d."""
    from Miniproject_2.others import conv as conv_module
    monkeypatch.setattr(conv_module, "gather_policy", lambda C, O, kh, kw: policy)
    test_conv2d_matches_torch(case, fast=True)
    N, C, O, H, W, k, s, p, d, bias = case
    t = TransposeConv2d(O, C, k, stride=s, padding=p, dilation=d, bias=bias).use_fast_paths()
    check_layer(t, torch.randn(N, O, H, W, dtype=torch.float64),
                lambda x, w, b=None: F.conv_transpose2d(x, w, b, s, p, 0, 1, d))


# (N, C, O, H, W, padding, bias): output sizes that are and are not multiples of the 4x4 tiles, down to 1x1; even
# batches are split into two parts of N/2 images (winograd.PARTS), odd ones are not
WINOGRAD_CASES = [(2, 3, 4, 8, 8, 1, True), (3, 2, 5, 9, 7, 1, False), (1, 4, 3, 3, 3, 0, True),
                  (2, 3, 2, 5, 11, 2, True), (2, 2, 3, 6, 4, (0, 3), True), (1, 5, 4, 1, 2, (1, 2), True),
                  (6, 3, 4, 7, 9, 1, True)]


@pytest.mark.parametrize("case", WINOGRAD_CASES)
def test_winograd_path(case, monkeypatch):
    """3x3 stride-1 layers of 16 channels and more run Winograd's F(4x4, 3x3): force it on small layers, for
    Conv2d, the stride-1 TransposeConv2d (a flipped convolution) and Upsampling."""
    from Miniproject_2.others import conv as conv_module
    from Miniproject_2.others.winograd import WinogradConv
    monkeypatch.setattr(conv_module, "winograd_applies", lambda *a: True)
    N, C, O, H, W, p, bias = case
    conv = Conv2d(C, O, 3, padding=p, bias=bias).use_fast_paths()
    check_layer(conv, torch.randn(N, C, H, W, dtype=torch.float64), lambda x, w, b=None: F.conv2d(x, w, b, 1, p))
    assert isinstance(conv.op, WinogradConv)
    pp = (p, p) if isinstance(p, int) else p
    if max(pp) <= 2:
        t = TransposeConv2d(C, O, 3, padding=p, bias=bias).use_fast_paths()
        check_layer(t, torch.randn(N, C, H + 2, W + 2, dtype=torch.float64),
                    lambda x, w, b=None: F.conv_transpose2d(x, w, b, 1, p))
        assert isinstance(t.op, WinogradConv)
    up = Upsampling(C, O, 3, padding=p, bias=bias).use_fast_paths()
    check_layer(up, torch.randn(N, C, H, W, dtype=torch.float64),
                lambda x, w, b=None: F.conv2d(F.interpolate(x, scale_factor=2), w, b, 1, p))
    assert isinstance(up.conv.op, WinogradConv)


@pytest.mark.parametrize("kind", ["OutputSideConv", "Im2colConv", "DirectConv"])
@pytest.mark.parametrize("case", CONV_CASES[:9] + random_conv_cases(8, 2))
def test_each_op_where_it_applies(case, kind, monkeypatch):
    """Force one op kind on every case it can run (OutputSideConv: stride 1, padding <= d(k-1); Im2colConv: no
    dilation), whatever channel counts the policy would pick it for."""
    from Miniproject_2.others import conv as conv_module
    N, C, O, H, W, k, s, p, d, bias = case
    k, s, p, d = (conv_module.pair(v) for v in (k, s, p, d))
    if kind == "OutputSideConv" and (s != (1, 1) or p[0] > d[0] * (k[0] - 1) or p[1] > d[1] * (k[1] - 1)):
        pytest.skip("OutputSideConv needs stride 1 and padding <= d(k-1)")
    if kind == "Im2colConv" and d != (1, 1):
        pytest.skip("Im2colConv needs dilation 1")
    monkeypatch.setattr(conv_module, "choose_op", lambda geo: getattr(conv_module, kind))
    conv = Conv2d(C, O, k, stride=s, padding=p, dilation=d, bias=bias).use_fast_paths()
    check_layer(conv, torch.randn(N, C, H, W, dtype=torch.float64), lambda x, w, b=None: F.conv2d(x, w, b, s, p, d))
    assert type(conv.op).__name__ == kind


@pytest.mark.parametrize("channels", [16, 64, 128])
def test_winograd_float32_within_default_tolerance(channels):
    """Float32 Winograd vs the exact (float64) convolution: outputs and input gradients within torch.testing's default
    float32 tolerance (rtol 1.3e-6, atol 1e-5; the largest error measured is 1e-5 at 96-128 channels, torch's own
    float32 conv2d errs 1e-6 on the CPU), weight gradients (sums over 2048 positions) within 1e-4 relative. The
    reference is float64 because torch's float32 one is not exact enough on every device: on CUDA it computes in
    TF32 by default (errors of ~8e-4)."""
    conv = Conv2d(channels, channels, 3, padding=1).use_fast_paths()
    x = torch.randn(8, channels, 16, 16)
    y = conv.forward(x)
    g = torch.randn_like(y)
    dx = conv.backward(g)
    y_ref, (dx_ref, dw_ref, db_ref) = autograd(lambda x, w, b: F.conv2d(x, w, b, padding=1), x.double(),
                                               conv.weight.double(), conv.bias.double(), grad_out=g.double())
    f32 = dict(rtol=1.3e-6, atol=1e-5)                      # torch.testing's defaults for float32
    torch.testing.assert_close(y.double(), y_ref, **f32)
    torch.testing.assert_close(dx.double(), dx_ref, **f32)
    torch.testing.assert_close(conv.weight_grad.double(), dw_ref, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(conv.bias_grad.double(), db_ref, rtol=1e-4, atol=1e-3)
    assert type(conv.op).__name__ == "WinogradConv"


def test_fast_paths_are_picked_for_the_model_layers():
    from Miniproject_2.model import Model
    from Miniproject_2.others.conv import Im2colConv, OutputSideConv
    from Miniproject_2.others.exact import ExactConv
    from Miniproject_2.others.winograd import WinogradConv
    kinds = {}
    for C, O, s, size in ((3, 64, 2, 32), (64, 96, 2, 16), (96, 64, 1, 16), (64, 3, 1, 32), (32, 32, 1, 32)):
        conv = Conv2d(C, O, 3, stride=s, padding=1).use_fast_paths()
        conv.forward(torch.randn(2, C, size, size))
        kinds[(C, O)] = type(conv.op)
    assert kinds == {(3, 64): Im2colConv, (64, 96): Im2colConv, (96, 64): WinogradConv, (64, 3): OutputSideConv,
                     (32, 32): WinogradConv}
    # a block built directly adds as PyTorch does; Model's own network is built with the fast ops
    direct = Conv2d(96, 64, 3, padding=1)
    direct.forward(torch.randn(2, 96, 16, 16))
    assert type(direct.op) is ExactConv
    model = Model(device=str(torch.empty(0).device))
    model.predict(torch.rand(2, 3, 32, 32) * 255)
    assert [type(layer.op) for layer in model.net if isinstance(layer, Conv2d)] == [Im2colConv, Im2colConv]
    assert [type(layer.conv.op) for layer in model.net if isinstance(layer, Upsampling)] == [WinogradConv,
                                                                                            OutputSideConv]


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_layers_accept_any_memory_layout(fast):
    """The fast convolutions return (N, C, H, W) tensors stored channels-last; every block takes either."""
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    for layer in (Conv2d(16, 16, 3, padding=1), Conv2d(16, 16, 3, stride=2, padding=1), Conv2d(16, 2, 3, padding=1),
                  NearestUpsampling(2), TransposeConv2d(16, 16, 3, padding=1), TransposeConv2d(16, 16, 3, stride=2)):
        layer.use_fast_paths(fast).to(torch.float64)
        a = layer.forward(x)
        b = layer.forward(x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2))
        torch.testing.assert_close(a, b, **TOL)
        g = torch.randn_like(a)
        da = layer.backward(g)
        db = layer.backward(g.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2))
        torch.testing.assert_close(da, db, **TOL)


def test_conv2d_course_check_float32():
    conv = Conv2d(3, 3, 3)
    x = torch.randn(4, 3, 16, 16)
    assert conv.weight.shape == (3, 3, 3, 3) and conv.bias.shape == (3,)
    torch.testing.assert_close(conv.forward(x), F.conv2d(x, conv.weight, conv.bias))
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias))


def test_conv2d_default_init_bounds():
    conv = Conv2d(4, 8, (3, 5))
    bound = 1 / (4 * 3 * 5) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.bias.abs().max() <= bound
    assert conv.weight.std() > bound / 3  # uniform, not all zeros
    t = TransposeConv2d(4, 8, 3)
    assert t.weight.shape == (4, 8, 3, 3) and t.weight.abs().max() <= 1 / (8 * 9) ** 0.5


def test_conv2d_rejects_bad_input():
    conv = Conv2d(3, 4, 3)
    with pytest.raises(ValueError):
        conv.forward(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError):
        conv.forward(torch.randn(3, 8, 8))
    with pytest.raises(ValueError):
        conv.forward(torch.randn(1, 3, 2, 2))  # smaller than the kernel
    with pytest.raises(ValueError):
        Conv2d(3, 4, 0)


# (N, C_in, C_out, H, W, kernel, stride, padding, output_padding, dilation, bias)
TCONV_CASES = [
    (1, 3, 3, 4, 4, 3, 1, 0, 0, 1, True),
    (2, 4, 3, 5, 6, 3, 2, 1, 1, 1, True),
    (3, 2, 5, 7, 4, (2, 3), (2, 1), (0, 1), (1, 0), 1, False),
    (2, 3, 2, 4, 5, 4, 2, 1, 0, 1, True),
    (1, 2, 2, 6, 6, 3, 3, 2, 2, 1, True),
    (2, 3, 4, 5, 5, 3, 1, 1, 0, 2, True),
    (4, 1, 2, 3, 7, (3, 1), (3, 2), (1, 0), (0, 1), (1, 1), True),
    (5, 3, 3, 4, 4, 2, 2, 0, 0, 1, True),
]


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
@pytest.mark.parametrize("case", TCONV_CASES)
def test_transpose_conv2d_matches_torch(case, fast):
    N, C, O, H, W, k, s, p, op, d, bias = case
    t = TransposeConv2d(C, O, k, stride=s, padding=p, output_padding=op, bias=bias, dilation=d).use_fast_paths(fast)
    x = torch.randn(N, C, H, W, dtype=torch.float64)
    check_layer(t, x, lambda x, w, b=None: F.conv_transpose2d(x, w, b, s, p, op, 1, d))


@pytest.mark.parametrize("scale", [1, 2, 3, (2, 3)])
def test_nearest_upsampling_matches_torch(scale):
    up = NearestUpsampling(scale)
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64)
    sf = scale if isinstance(scale, tuple) else (scale, scale)
    check_layer(up, x, lambda x: F.interpolate(x, scale_factor=sf, mode="nearest"))
    assert up.param() == []


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
@pytest.mark.parametrize("case", [(2, 3, 4, 3, 2, 1, 1), (1, 4, 2, (3, 2), 3, 1, (1, 0)), (3, 2, 2, 3, 2, 2, 1)])
def test_upsampling_matches_torch(case, fast):
    N, C, O, k, scale, s, p = case
    up = Upsampling(C, O, k, scale_factor=scale, stride=s, padding=p).use_fast_paths(fast)
    x = torch.randn(N, C, 5, 6, dtype=torch.float64)
    check_layer(up, x, lambda x, w, b: F.conv2d(F.interpolate(x, scale_factor=scale, mode="nearest"), w, b, s, p))
    assert up.weight is up.conv.weight and len(up.param()) == 2


@pytest.mark.parametrize("layer,ref", [
    (ReLU(), F.relu), (LeakyReLU(0.1), lambda x: F.leaky_relu(x, 0.1)), (Sigmoid(), torch.sigmoid)])
def test_activations_match_torch(layer, ref):
    x = torch.randn(4, 3, 5, 7, dtype=torch.float64)
    x[0, 0, 0, :3] = 0.0  # the derivative at 0 follows PyTorch's convention
    x[1, 0, 0, 0], x[1, 0, 0, 1] = -800.0, 800.0  # saturation without NaN
    check_layer(layer, x, ref)
    assert layer.param() == []


@pytest.mark.parametrize("loss,ref", [(MSE(), F.mse_loss), (L1Loss(), F.l1_loss)])
def test_losses_match_torch(loss, ref):
    pred = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    target = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    target[0, 0, 0] = pred[0, 0, 0]  # zero differences
    value = loss.forward(pred, target)
    y_ref, (g_ref,) = autograd(lambda p: ref(p, target), pred, grad_out=torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(value, y_ref, **TOL)
    torch.testing.assert_close(loss.backward(), g_ref, **TOL)
    with pytest.raises(ValueError):
        loss.forward(pred, target[:2])


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_sequential_matches_torch_network(fast):
    ours = Sequential(Conv2d(3, 5, 3, stride=2, padding=1), ReLU(), Conv2d(5, 6, 3, stride=2, padding=1), ReLU(),
                      Upsampling(6, 5, 3, padding=1), LeakyReLU(0.2), Upsampling(5, 3, 3, padding=1),
                      TransposeConv2d(3, 3, 3, padding=1), Sigmoid())
    ours.use_fast_paths(fast).to(torch.float64)
    assert all(m.fast == fast for m in (ours, ours[0], ours[4].conv, ours[7]))
    ws = [p for p, _ in ours.param()]

    def ref(x, *w):
        y = F.relu(F.conv2d(x, w[0], w[1], 2, 1))
        y = F.relu(F.conv2d(y, w[2], w[3], 2, 1))
        y = F.leaky_relu(F.conv2d(F.interpolate(y, scale_factor=2), w[4], w[5], 1, 1), 0.2)
        y = F.conv2d(F.interpolate(y, scale_factor=2), w[6], w[7], 1, 1)
        return torch.sigmoid(F.conv_transpose2d(y, w[8], w[9], 1, 1))

    x = torch.randn(2, 3, 12, 8, dtype=torch.float64)
    y = ours(x)
    loss = MSE()
    target = torch.rand_like(y)
    loss.forward(y, target)
    ours.backward(loss.backward())
    y_ref, grads = autograd(lambda x, *w: F.mse_loss(ref(x, *w), target), x, *ws,
                            grad_out=torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(y, ref(x, *ws), **TOL)
    for (_, g), r in zip(ours.param(), grads[1:]):
        torch.testing.assert_close(g, r, **TOL)
    assert len(ours) == 9 and isinstance(ours[0], Conv2d) and len(ours.param()) == 10


def test_param_pairs_and_bias_off():
    assert ReLU().param() == [] and Sigmoid().param() == [] and MSE().param() == []
    conv = Conv2d(2, 3, 3, bias=False)
    (w, g), = conv.param()
    assert w is conv.weight and g.shape == w.shape and (g == 0).all()
    assert len(Conv2d(2, 3, 3).param()) == 2


def test_works_with_autograd_on_too():
    torch.set_grad_enabled(True)
    conv = Conv2d(2, 3, 3, padding=1)
    y = conv(torch.randn(2, 2, 6, 6))
    dx = conv.backward(torch.ones_like(y))
    assert dx.shape == (2, 2, 6, 6) and not y.requires_grad


# ------------------------------------------------------------------------------------------------------ optimizers

def _run_optimizer(make_ours, make_torch, steps=6):
    shapes = [(4, 3), (5,), (2, 3, 3, 3)]
    init = [torch.randn(s, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(steps)]
    ours_p = [t.clone() for t in init]
    ours_g = [torch.zeros_like(t) for t in init]
    opt = make_ours(list(zip(ours_p, ours_g)))
    ref_p = [t.clone().requires_grad_(True) for t in init]
    ref = make_torch(ref_p)
    for step in range(steps):
        opt.zero_grad()
        for g, new in zip(ours_g, grads[step]):
            g.add_(new)
        opt.step()
        for p, new in zip(ref_p, grads[step]):
            p.grad = new.clone()
        ref.step()
    for a, b in zip(ours_p, ref_p):
        torch.testing.assert_close(a, b.detach(), rtol=1e-10, atol=1e-12)
    return opt


@pytest.mark.parametrize("kw", [
    dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.02, momentum=0.8, weight_decay=0.1), dict(lr=0.03, momentum=0.9, nesterov=True, weight_decay=0.01)])
def test_sgd_matches_torch(kw):
    opt = _run_optimizer(lambda ps: SGD(ps, **kw), lambda ps: torch.optim.SGD(ps, **kw))
    assert opt.lr == kw["lr"]


@pytest.mark.parametrize("kw", [
    dict(lr=1e-2), dict(lr=3e-3, betas=(0.8, 0.99)), dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, amsgrad=True),
    dict(lr=5e-3, betas=(0.9, 0.99), eps=1e-6)])
def test_adam_matches_torch(kw):
    _run_optimizer(lambda ps: Adam(ps, **kw), lambda ps: torch.optim.Adam(ps, **kw, foreach=False))


def test_sgd_trains_a_layer_and_lr_is_settable():
    conv = Conv2d(2, 2, 3, padding=1)
    opt = SGD(conv.param(), lr=0.1)
    x = torch.randn(4, 2, 6, 6)
    target = F.conv2d(x, torch.randn(2, 2, 3, 3), padding=1)
    loss = MSE()
    first = loss.forward(conv(x), target).item()
    for _ in range(30):
        opt.zero_grad()
        loss.forward(conv(x), target)
        conv.backward(loss.backward())
        opt.step()
    opt.lr = 0.05
    assert loss.forward(conv(x), target).item() < 0.5 * first
    with pytest.raises(ValueError):
        SGD(conv.param(), lr=-1)


# ----------------------------------------------------------------------------------------------------- import rule

ALLOWED_FROM = {"torch": {"empty", "cat", "arange"}, "torch.nn.functional": {"fold", "unfold"}}


def _violations(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    stdlib = sys.stdlib_module_names
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] not in stdlib:
                    bad.append(f"{path.name}:{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:  # relative: our own modules
                continue
            mod = node.module or ""
            if mod in ALLOWED_FROM:
                extra = {a.name for a in node.names} - ALLOWED_FROM[mod]
                if extra:
                    bad.append(f"{path.name}:{node.lineno}: from {mod} import {', '.join(sorted(extra))}")
            elif mod.split(".")[0] == "others":  # model.py's top-level fallback imports its own others/
                continue
            elif mod.split(".")[0] not in stdlib:
                bad.append(f"{path.name}:{node.lineno}: from {mod} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            bad.append(f"{path.name}:{node.lineno}: __import__(...)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module":
            # allowed only for our own modules, named literally (model.py's top-level fallback)
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("others.")):
                bad.append(f"{path.name}:{node.lineno}: importlib.import_module of anything but others.*")
    return bad


def test_only_allowed_imports():
    files = sorted(MP2.rglob("*.py"))
    assert len(files) >= 5
    bad = [v for f in files for v in _violations(f)]
    assert not bad, "forbidden imports in Miniproject_2:\n" + "\n".join(bad)


def test_import_checker_catches_violations(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("import torch\nfrom torch import empty, zeros\nfrom torch.nn import Conv2d\nimport numpy as np\n"
                 "from os import path\nfrom . import nn\n")
    assert len(_violations(f)) == 4


def test_grader_style_import():
    """The course grader puts Miniproject_2/ on sys.path and runs ``from model import ...`` (fresh interpreter)."""
    code = ("import torch, torch.nn.functional as F; torch.set_grad_enabled(False)\n"
            "from model import Conv2d, TransposeConv2d, NearestUpsampling, Upsampling, ReLU, Sigmoid, MSE, SGD, "
            "Sequential, Model\n"
            "c = Conv2d(3, 3, 3); x = torch.randn(1, 3, 10, 10)\n"
            "torch.testing.assert_close(c.forward(x), F.conv2d(x, c.weight, c.bias)); print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=MP2, capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(MP2), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
