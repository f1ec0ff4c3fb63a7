"""Building blocks of a small deep-learning framework, written without autograd.

Every block follows the course's shape: ``forward(*input)`` computes and remembers what its backward needs,
``backward(*gradwrtoutput)`` adds the gradient of the loss into each parameter's gradient buffer (gradients
accumulate until ``zero_grad``) and returns the gradient with respect to its input, ``param()`` lists
``(parameter, gradient)`` pairs (empty for blocks without parameters). Names and signatures mirror PyTorch.
"""

import math

from torch import empty

from .conv import (
    ConvGeometry,
    conv2d_forward,
    conv2d_input_grad,
    conv2d_weight_grad,
    conv_op,
    pair,
    prepare_input,
    prepare_output,
)
from .exact import ExactTransposeConv


class Module(object):
    """Base class. Parameters are the attributes named in ``_params``; the gradient of ``name`` is ``name_grad``."""

    _params = ()
    fast = False   # convolutions add in PyTorch's order unless use_fast_paths() set this (others/conv.py: conv_op)

    def forward(self, *input):
        raise NotImplementedError

    def backward(self, *gradwrtoutput):
        raise NotImplementedError

    def __call__(self, *input):
        return self.forward(*input)

    def children(self):
        """Sub-modules whose parameters belong to this one."""
        return []

    def param(self):
        """[(parameter, gradient)] of this block and its children, in a fixed order."""
        own = [(getattr(self, n), self._grad(n)) for n in self._params]
        return own + [pg for child in self.children() for pg in child.param()]

    def zero_grad(self):
        for _, g in self.param():
            g.zero_()

    def use_fast_paths(self, enabled=True):
        """Let the convolutions in this block pick the fastest op for each shape (Winograd and the rest, whose float32
        sums differ from PyTorch's in the last bits) instead of adding in PyTorch's own order; returns self. Off for a
        block built directly, so it matches torch.nn.functional's result as the course's tests check it; Model's
        network turns it on, where only speed and accuracy count."""
        self.fast = bool(enabled)
        for child in self.children():
            child.use_fast_paths(enabled)
        return self

    def to(self, *args, **kwargs):
        """Move/cast parameters and gradients like ``Tensor.to`` (do it before handing ``param()`` to an optimizer)."""
        for n in self._params:
            setattr(self, n, getattr(self, n).to(*args, **kwargs))
            setattr(self, n + "_grad", self._grad(n).to(*args, **kwargs))
        for child in self.children():
            child.to(*args, **kwargs)
        return self

    def _grad(self, name):
        """Gradient buffer of parameter ``name``, remade (zeros) if the parameter was replaced by another shape/type."""
        p, g = getattr(self, name), getattr(self, name + "_grad", None)
        if g is None or g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
            g = p.new_zeros(p.shape)
            setattr(self, name + "_grad", g)
        return g

    def _accumulate(self, name, grad):
        self._grad(name).add_(grad)

    def __repr__(self):
        return type(self).__name__ + "()"


def _uniform(shape, bound):
    return empty(shape).uniform_(-bound, bound)


def _channels_last(x):
    """True when x (N, C, H, W) is stored as (N, H, W, C), as the fast convolutions return it (others/tiles.py)."""
    return x.shape[1] > 1 and x.permute(0, 2, 3, 1).is_contiguous()


def _check_input(x, channels, who):
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{who} expects input shaped (N, {channels}, H, W), got {tuple(x.shape)}")


class Conv2d(Module):
    """2-D convolution (cross-correlation) like torch.nn.Conv2d; weight (out, in, kh, kw), bias (out,)."""

    _params = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0 \
                or self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("Conv2d needs positive channels, kernel_size, stride, dilation and padding >= 0")
        # PyTorch's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same bound for bias
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        self.weight = _uniform((self.out_channels, self.in_channels) + self.kernel_size, bound)
        self.bias = _uniform((self.out_channels,), bound) if bias else None
        if not bias:
            self._params = ("weight",)
        self.op = None   # how this shape is computed (others/conv.py: conv_op), with its work buffers

    def forward(self, x):
        # y[n, o] = bias[o] + sum_{c, i, j} weight[o, c, i, j] * x_padded[n, c, s*u + d*i, s*v + d*j]
        _check_input(x, self.in_channels, "Conv2d")
        self.op = conv_op(self.op, x.shape, self.out_channels, self.kernel_size, self.stride, self.padding,
                          self.dilation, self.fast)
        return self.op.forward(x, self.weight, self.bias)

    def backward(self, grad):
        # dweight = grad (*) x,  dbias = sum of grad,  dx = transposed convolution of grad with weight
        dx, dweight, dbias = self.op.backward(grad, self.weight, self.bias is not None)
        self._accumulate("weight", dweight)
        if self.bias is not None:
            self._accumulate("bias", dbias)
        return dx

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"bias={self.bias is not None})")


class TransposeConv2d(Module):
    """Transposed convolution like torch.nn.ConvTranspose2d; weight (in, out, kh, kw), bias (out,).

    It is the input-gradient of a Conv2d(out -> in) with the same weight, so forward and backward swap roles:
    forward = that conv's input gradient, backward = that conv's forward (and its weight gradient)."""

    _params = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True,
                 dilation=1):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.output_padding, self.dilation = pair(output_padding, "output_padding"), pair(dilation, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding + self.output_padding) < 0 \
                or self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("TransposeConv2d needs positive channels, kernel_size, stride, dilation and "
                             "padding, output_padding >= 0")
        if any(op >= max(s, d) for op, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError("output_padding must be smaller than either stride or dilation")
        # PyTorch computes fan_in from weight.shape[1] (= out_channels) for transposed convolutions
        bound = 1.0 / math.sqrt(self.out_channels * self.kernel_size[0] * self.kernel_size[1])
        self.weight = _uniform((self.in_channels, self.out_channels) + self.kernel_size, bound)
        self.bias = _uniform((self.out_channels,), bound) if bias else None
        if not bias:
            self._params = ("weight",)
        self.path = self.geo = self.xg = self.op = None

    def forward(self, x):
        # y = conv_{out->in}^T(x) + bias: every input pixel spreads weight[c_in] * x over a kh x kw window
        _check_input(x, self.in_channels, "TransposeConv2d")
        N, _, H, W = x.shape
        size = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
                zip((H, W), self.stride, self.padding, self.dilation, self.kernel_size, self.output_padding)]
        if min(size) < 1:
            raise ValueError(f"TransposeConv2d: input {H}x{W} gives an empty output {size[0]}x{size[1]}")
        # the convolution out -> in that this layer transposes
        geo = ConvGeometry((N, self.out_channels, size[0], size[1]), self.in_channels, self.kernel_size,
                           self.stride, self.padding, self.dilation)
        pad = tuple(d * (k - 1) - p for d, k, p in zip(self.dilation, self.kernel_size, self.padding))
        if not self.fast:                       # added up as PyTorch does (others/exact.py)
            self.path, self.op = "exact", ExactTransposeConv(geo)
            return self.op.forward(x, self.weight, self.bias)
        if self.stride == (1, 1) and self.output_padding == (0, 0) and min(pad) >= 0:
            # stride 1: a plain convolution of x with the kernel flipped and in/out swapped, padding d(k-1)-p
            prev = self.op if self.path == "flipped" else None
            self.path = "flipped"
            self.op = conv_op(prev, x.shape, self.out_channels, self.kernel_size, (1, 1), pad, self.dilation)
            return self.op.forward(x, self.weight.transpose(0, 1).flip(2, 3), self.bias)
        self.path, self.geo = "strided", geo
        self.xg = prepare_output(x, geo)        # x plays the role of the output gradient of the virtual conv
        y = conv2d_input_grad(self.xg, self.weight, geo)
        if self.bias is not None:
            y += self.bias.view(1, -1, 1, 1)
        return y

    def backward(self, grad):
        # dx = conv_{out->in}(grad),  dweight = x (*) grad,  dbias = sum of grad
        with_bias = self.bias is not None
        if self.path == "exact":
            dx, dweight, dbias = self.op.backward(grad, self.weight, with_bias)
        elif self.path == "flipped":            # the stride-1 case: the flipped convolution's gradients
            dx, dweight, dbias = self.op.backward(grad, self.weight.transpose(0, 1).flip(2, 3), with_bias)
            dweight = dweight.flip(2, 3).transpose(0, 1)
        else:
            gs = prepare_input(grad, self.geo)
            dx, dweight = conv2d_forward(gs, self.weight, self.geo), conv2d_weight_grad(self.xg, gs, self.geo)
            dbias = grad.sum((0, 2, 3)) if with_bias else None
        self._accumulate("weight", dweight)
        if with_bias:
            self._accumulate("bias", dbias)
        return dx

    def __repr__(self):
        return (f"TransposeConv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding})")


class NearestUpsampling(Module):
    """Nearest-neighbour upsampling by integer factors, like torch.nn.Upsample(scale_factor, mode='nearest')."""

    def __init__(self, scale_factor=2):
        self.scale_factor = pair(scale_factor, "scale_factor")
        if min(self.scale_factor) < 1:
            raise ValueError("scale_factor must be a positive integer")

    def forward(self, x):
        # y[n, c, sh*u + a, sw*v + b] = x[n, c, u, v]: a broadcast view, then one copy (in x's memory layout)
        if x.dim() != 4:
            raise ValueError(f"NearestUpsampling expects input shaped (N, C, H, W), got {tuple(x.shape)}")
        N, C, H, W = x.shape
        sh, sw = self.scale_factor
        if _channels_last(x):   # what the fast convolutions return and read: keep it
            t = x.permute(0, 2, 3, 1).view(N, H, 1, W, 1, C).expand(N, H, sh, W, sw, C)
            return t.reshape(N, H * sh, W * sw, C).permute(0, 3, 1, 2)
        return x.view(N, C, H, 1, W, 1).expand(N, C, H, sh, W, sw).reshape(N, C, H * sh, W * sw)

    def backward(self, grad):
        # dx[n, c, u, v] = sum of grad over the sh x sw block that copied x[n, c, u, v]: sh*sw strided views added
        # (in grad's layout, whatever it is; a reduction over the two inner offsets would be many times slower)
        sh, sw = self.scale_factor
        dx = grad[:, :, ::sh, ::sw].clone()
        for a in range(sh):
            for b in range(sw):
                if a or b:
                    dx += grad[:, :, a::sh, b::sw]
        return dx

    def __repr__(self):
        return f"NearestUpsampling({self.scale_factor})"


class Upsampling(Module):
    """Nearest-neighbour upsampling followed by a convolution (the course's alternative to TransposeConv2d)."""

    def __init__(self, in_channels, out_channels, kernel_size, scale_factor=2, stride=1, padding=0, dilation=1,
                 bias=True):
        self.upsample = NearestUpsampling(scale_factor)
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias)

    def children(self):
        return [self.upsample, self.conv]

    # the parameters are the convolution's; expose them like a single layer
    weight = property(lambda self: self.conv.weight, lambda self, v: setattr(self.conv, "weight", v))
    bias = property(lambda self: self.conv.bias, lambda self, v: setattr(self.conv, "bias", v))

    def forward(self, x):
        # y = conv(upsample(x))
        return self.conv.forward(self.upsample.forward(x))

    def backward(self, grad):
        # chain rule through the two stages
        return self.upsample.backward(self.conv.backward(grad))

    def __repr__(self):
        return f"Upsampling({self.upsample!r}, {self.conv!r})"


class ReLU(Module):
    def forward(self, x):
        # y = max(x, 0)
        self.mask = x > 0
        return x.clamp(min=0)

    def backward(self, grad):
        # dy/dx = 1 where x > 0, else 0 (0 at x = 0, like PyTorch)
        return grad * self.mask


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        # y = x if x > 0 else negative_slope * x
        self.mask = x > 0
        return x.where(self.mask, x * self.negative_slope)

    def backward(self, grad):
        # dy/dx = 1 if x > 0 else negative_slope
        return grad.where(self.mask, grad * self.negative_slope)

    def __repr__(self):
        return f"LeakyReLU({self.negative_slope})"


class Sigmoid(Module):
    def forward(self, x):
        # y = 1 / (1 + exp(-x)); exp overflows to inf for very negative x, giving exactly 0
        self.y = (-x).exp().add_(1.0).reciprocal_()
        return self.y

    def backward(self, grad):
        # dy/dx = y (1 - y)
        return grad * self.y * (1.0 - self.y)


class MSE(Module):
    """Mean squared error: forward(prediction, target) -> mean((prediction - target)^2);
    backward() -> dloss/dprediction."""

    def forward(self, prediction, target):
        if prediction.shape != target.shape:
            raise ValueError(f"MSE: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        self.diff = prediction - target
        return (self.diff * self.diff).mean()

    def backward(self, grad=1.0):
        # d mean(d^2) / d prediction = 2 d / numel
        return self.diff * (2.0 / self.diff.numel()) * grad


class L1Loss(Module):
    """Mean absolute error: forward(prediction, target) -> mean(|prediction - target|);
    backward() -> sign(d) / numel."""

    def forward(self, prediction, target):
        if prediction.shape != target.shape:
            raise ValueError(f"L1Loss: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        self.diff = prediction - target
        return self.diff.abs().mean()

    def backward(self, grad=1.0):
        # d mean(|d|) / d prediction = sign(d) / numel (0 where d = 0, like PyTorch)
        return self.diff.sign() * (grad / self.diff.numel())


class Sequential(Module):
    """Chains modules: forward left to right, backward right to left."""

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        for m in modules:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes Modules, got {type(m).__name__}")
        self.modules = list(modules)

    def children(self):
        return self.modules

    def forward(self, x):
        for m in self.modules:
            x = m.forward(x)
        return x

    def backward(self, grad):
        for m in reversed(self.modules):
            grad = m.backward(grad)
        return grad

    def __getitem__(self, i):
        return self.modules[i]

    def __len__(self):
        return len(self.modules)

    def __iter__(self):
        return iter(self.modules)

    def __repr__(self):
        return "Sequential(\n" + "".join(f"  {m!r},\n" for m in self.modules) + ")"
