"""Convolutions added up in the order PyTorch's own CPU code adds them: what a directly built block runs.

Why: float32 addition is not associative, so two correct convolutions that add the same products in different orders
differ in the last bits, and ``torch.allclose`` at its default tolerances (rtol 1e-5, atol 1e-8) fails wherever an
output is near zero. The course compares a block built on its own with ``F.conv2d`` exactly that way. So a block
built directly adds as PyTorch does; the network inside ``Model`` turns on the fast ops (``Module.use_fast_paths``,
conv.py: ``choose_op``), where only speed and accuracy matter.

Which order PyTorch uses depends on the call (aten's ``use_mkldnn`` rule): a float32 CPU convolution goes to oneDNN
when the batch holds more than one image, the input more than 20480 numbers, or the kernel is larger than 3x3 both
ways; everything else (float64 too) runs PyTorch's own im2col path (``slow_conv2d``, ``slow_conv_transpose2d``):
per image, im2col columns in (channel, kernel row, kernel column) order and one GEMM. ``native_order`` tells the two
apart without importing torch (it assumes more than one thread, the default on any multi-core machine; the rule
differs only for 1x1 kernels on one thread).

* On the im2col path ours is that computation, call for call: the output starts as the bias and the GEMM adds
  W @ cols to it (conv); the columns W^T @ x are added up by col2im (fold), then the bias (transposed conv);
  gradients as its backward computes them. The results are the same float32 numbers, bit for bit.
* oneDNN's direct kernels add, for each output, over blocks of 16 input channels, then the kernel taps, then the
  channels of a block, and add the bias last: ours orders the GEMM's columns that way. Where oneDNN's order is
  exactly that, the results are bit for bit the same; elsewhere (wide layers, where oneDNN splits the sum) they are
  at least as close as the im2col order. Backward passes keep the im2col order there (no simple order is closer),
  as batched products instead of one per image.

Memory is the im2col matrix of one batch (C*kh*kw rows), and a network of these blocks trains several times slower
than with the fast ops: call ``use_fast_paths()`` on a network to train it.
"""

from torch import arange
from torch.nn.functional import fold, unfold

BLOCK = 16               # oneDNN's channel block with AVX-512 (one register of float32)
ONEDNN_MIN_NUMEL = 20480  # aten's use_mkldnn: larger single-image inputs go to oneDNN


def native_order(x, kernel_size):
    """True where PyTorch adds a convolution of ``x`` in its own im2col order, False where oneDNN computes it."""
    N, C, H, W = x.shape
    kh, kw = kernel_size
    onednn = str(x.dtype) == "torch.float32" and str(x.device) == "cpu" and (
        N > 1 or N * C * H * W > ONEDNN_MIN_NUMEL or (kh > 3 and kw > 3))
    return not onednn


def onednn_columns(C, taps, device):
    """The rows of an im2col matrix (channel-major: c * taps + t) in oneDNN's order: (channel block, tap, channel)."""
    c = arange(C, device=device).view(C, 1)
    t = arange(taps, device=device).view(1, taps)
    return ((c // BLOCK) * (BLOCK * taps) + t * BLOCK + c % BLOCK).view(-1).argsort()


class ExactConv:
    """Conv2d as PyTorch adds it (see the module docstring); ``geo`` is the convolution's ConvGeometry."""

    def __init__(self, geo):
        self.geo = geo

    def forward(self, x, w, bias):
        # y[n] = bias + W @ cols[n]  (W: (O, C*kh*kw), cols[n]: (C*kh*kw, Ho*Wo))
        g = self.geo
        self.cols = unfold(x, **g.unfold_args())
        self.native = native_order(x, (g.kh, g.kw))
        wm = w.reshape(g.O, -1)
        if self.native:                          # one GEMM per image onto the bias, as slow_conv2d does
            y = x.new_empty(g.N, g.O, g.Ho * g.Wo)
            for n in range(g.N):
                if bias is None:
                    y[n] = wm @ self.cols[n]
                else:
                    y[n] = bias.view(-1, 1).expand(y[n].shape)
                    y[n].addmm_(wm, self.cols[n])
        else:                                    # oneDNN's order, one GEMM for the batch, the bias last
            order = onednn_columns(g.C, g.kh * g.kw, x.device)
            y = wm[:, order] @ self.cols[:, order]
            if bias is not None:
                y += bias.view(1, -1, 1)
        return y.view(g.N, g.O, g.Ho, g.Wo)

    def backward(self, grad, w, with_bias=True):
        # dx = col2im(W^T @ g[n]),  dW = sum_n g[n] @ cols[n]^T,  db = sum of g
        g = self.geo
        gm = grad.reshape(g.N, g.O, -1)
        wt = w.reshape(g.O, -1).t()
        if self.native:                          # image after image, as slow_conv2d's backward
            dcols = grad.new_empty(self.cols.shape)
            dw = w.new_zeros(g.O, g.C * g.kh * g.kw)
            for n in range(g.N):
                dcols[n] = wt @ gm[n]
                dw.addmm_(gm[n], self.cols[n].t())
        else:
            dcols = wt @ gm
            dw = (gm @ self.cols.transpose(1, 2)).sum(0)
        dx = fold(dcols, (g.H, g.W), **g.unfold_args())
        return dx, dw.view(w.shape), grad.sum((0, 2, 3)) if with_bias else None


class ExactTransposeConv:
    """TransposeConv2d as PyTorch's slow_conv_transpose2d adds it. ``geo`` is the geometry of the convolution it
    transposes (input: this layer's output, output: this layer's input); weight (C_in, C_out, kh, kw)."""

    def __init__(self, geo):
        self.geo = geo

    def forward(self, x, w, bias):
        # cols[n] = W^T @ x[n]  (W: (C_in, C_out*kh*kw)),  y = col2im(cols) + bias
        g = self.geo
        self.x = x.reshape(g.N, g.O, -1)
        self.native = native_order(x, (g.kh, g.kw))
        wt = w.reshape(g.O, -1).t()
        if self.native:                          # one GEMM per image, as slow_conv_transpose2d does
            cols = x.new_empty(g.N, wt.shape[0], self.x.shape[2])
            for n in range(g.N):
                cols[n] = wt @ self.x[n]
        else:
            cols = wt @ self.x
        y = fold(cols, (g.H, g.W), **g.unfold_args())
        if bias is not None:
            y += bias.view(1, -1, 1, 1)
        return y

    def backward(self, grad, w, with_bias=True):
        # gcols = im2col(g),  dx[n] = W @ gcols[n],  dW = sum over images of x[n] @ gcols[n]^T,  db = sum of g
        g = self.geo
        gcols = unfold(grad, **g.unfold_args())
        wm = w.reshape(g.O, -1)
        if self.native:                          # image after image, as its backward
            dx = grad.new_empty(self.x.shape)
            dw = w.new_zeros(wm.shape)
            db = grad.new_zeros(g.C) if with_bias else None
            for n in range(g.N):
                dx[n] = wm @ gcols[n]
                dw.addmm_(self.x[n], gcols[n].t())
                if with_bias:
                    db += grad[n].reshape(g.C, -1).sum(1)
        else:
            dx = wm @ gcols
            dw = (self.x @ gcols.transpose(1, 2)).sum(0)
            db = grad.sum((0, 2, 3)) if with_bias else None
        return dx.view(g.N, g.O, g.Ho, g.Wo), dw.view(w.shape), db
