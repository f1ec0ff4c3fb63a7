"""Convolution arithmetic shared by Conv2d and TransposeConv2d (no autograd).

A convolution y = conv(x, w) is linear in x and in w, so three functions are all we need:

    conv2d_forward(xs, w, geo)       y  = w * x     (xs = prepare_input(x, geo))
    conv2d_input_grad(gs, w, geo)    dx = w^T * g   (the transposed convolution; gs = prepare_output(g, geo))
    conv2d_weight_grad(gs, xs, geo)  dw = g * x     (correlation of the output gradient with the input)

TransposeConv2d uses the same three with the roles of x and y swapped.

Two ways of doing each, picked once per shape by `ConvGeometry`:

* stride 1 ("shift" path): zero-pad the input once into a flat (C, N*Hp*Wp) buffer. On that padded grid,
  kernel tap (i, j) of every output position reads the input at the fixed flat offset i*dh*Wp + j*dw, so
  the convolution is kh*kw matrix products of (O, C) weight slices with shifted *views* of the buffer (no
  im2col copy), accumulated in place. Outputs that land on padding columns are garbage and are cropped; their
  gradients are zero, so they never leak into dx or dw. The input gradient is the same construction on the
  output gradient g with the kernel flipped. A side with few channels (g of a 64 -> 3 layer, x of a 3 -> 64
  layer) is gathered into one im2col matrix over all taps (one product instead of kh*kw); for wide layers
  the gradient's kw taps of a kernel row are gathered (a "row im2col": kh products with K = kw*O), as kernel
  rows differ by a plain column offset. Few, large operations also keep the cost down when other processes
  compete for the cores (every operation ends at a barrier of its worker threads): a column-chunked variant
  (taps of a cache-sized chunk back to back) was faster on an idle machine but much slower on a loaded one
  (docs/benchmarks.md).
* any stride ("unfold" path): classic im2col with torch's unfold, one batched matrix product, and fold (col2im,
  a scatter-add) for the input gradient.

Those two are the general fallback (``DirectConv``). ``conv_op`` picks, once per shape, the op a layer runs. A layer
built directly runs ``ExactConv`` (exact.py): it adds in PyTorch's own order, so it gives ``F.conv2d``'s float32
numbers (bit for bit on PyTorch's im2col path), which is what the course's tests check. A layer whose ``fast`` flag
is set (``Model``'s network: ``Module.use_fast_paths``) runs the fastest op that applies, whose float32 sums differ
from PyTorch's in the last bits (Winograd's by more: winograd.py):

* ``WinogradConv`` (winograd.py): 3x3, stride 1, both sides at least 16 channels -- the wide stride-1 layers, where
  F(4x4, 3x3) needs 4x fewer multiply-adds;
* ``OutputSideConv`` (below): stride 1 with few output channels (the last 64 -> 3 layer) -- one GEMM gives every
  input position's products with all taps, summed by shifted views; the narrow output gradient's im2col gives dx
  and dw in one GEMM each;
* ``Im2colConv`` (below): strided (or few input channels), no dilation -- one im2col matrix of the channels-last
  input, so forward, weight gradient and input gradient are one large matrix product each;
* ``DirectConv``: everything else (dilated layers of more than a few channels, large paddings).

Each op has ``forward(x, w, bias) -> y`` and ``backward(grad, w, with_bias) -> (dx, dw, dbias or None)``, keeps what
its backward needs, and keeps its work buffers (tiles.Workspace) from one call to the next.
"""

from torch.nn.functional import fold, unfold

from .exact import ExactConv
from .tiles import Workspace, nhwc, overlap_add, padded, windows
from .winograd import WinogradConv, winograd_applies


def pair(v, name="value"):
    """int or pair -> (int, int)."""
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(a, int) for a in v):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v


def gather_policy(C, O, kh, kw):
    """How each side is laid out for the products on the shift path (measured on a 2-core CPU, fwd and bwd):
    x: "full" im2col when kh*kw*C <= O, else "flat" (views only); g: "full" when kh*kw*O <= C, "row" for wide
    layers, else "flat"."""
    x = "full" if kh * kw * C <= O else "flat"
    g = "full" if kh * kw * O <= C else "row" if min(C, O) >= 32 and kw > 1 else "flat"
    return x, g


class ConvGeometry:
    """All sizes of one convolution x (N, C, H, W) -> y (N, O, Ho, Wo), and the path used for it."""

    def __init__(self, x_shape, out_channels, kernel_size, stride, padding, dilation):
        self.N, self.C, self.H, self.W = x_shape
        self.O = out_channels
        self.kh, self.kw = kernel_size
        self.sh, self.sw = stride
        self.ph, self.pw = padding
        self.dh, self.dw = dilation
        # output size, as in the shape section of torch.nn.Conv2d's documentation
        self.Ho = (self.H + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1
        self.Wo = (self.W + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1
        if self.Ho <= 0 or self.Wo <= 0:
            raise ValueError(f"input of size {self.H}x{self.W} is too small for kernel {self.kh}x{self.kw} "
                             f"with padding {self.ph},{self.pw} and dilation {self.dh},{self.dw}")
        self.shift = self.sh == 1 and self.sw == 1
        if self.shift:
            self.Hp, self.Wp = self.H + 2 * self.ph, self.W + 2 * self.pw    # padded grid
            self.M = self.N * self.Hp * self.Wp                              # flat length of one channel
            self.bases = [i * self.dh * self.Wp for i in range(self.kh)]     # flat offset of kernel row i
            self.tail = (self.kw - 1) * self.dw                              # offset of the last tap in a row
            self.last = self.bases[-1] + self.tail                           # offset of the last tap
            self.Mv = self.M - self.last   # positions computed; every valid output is below Mv
            self.offs = [base + j * self.dw for base in self.bases for j in range(self.kw)]   # tap (i, j)
            self.x_mode, self.g_mode = gather_policy(self.C, self.O, self.kh, self.kw)

    # -- layout helpers of the shift path: (N, C, H, W) <-> flat padded (C, N*Hp*Wp) --

    def pad_flat(self, x, tail):
        """(N, C, H, W) -> zero-padded flat buffer (C, N*Hp*Wp + tail), zeros in the tail."""
        C = x.shape[1]
        buf = x.new_zeros(C, self.M + tail)
        grid = buf[:, :self.M].view(C, self.N, self.Hp, self.Wp)
        grid[:, :, self.ph:self.ph + self.H, self.pw:self.pw + self.W] = x.transpose(0, 1)
        return buf

    def crop_flat(self, buf):
        """flat buffer (C, N*Hp*Wp) -> (N, C, H, W) contiguous, dropping the padding."""
        C = buf.shape[0]
        grid = buf.view(C, self.N, self.Hp, self.Wp)[:, :, self.ph:self.ph + self.H, self.pw:self.pw + self.W]
        return grid.transpose(0, 1).contiguous()

    def out_flat(self, g, margin):
        """output-shaped (N, O, Ho, Wo) -> flat (O, margin + N*Hp*Wp): zeros, then g on the padded grid (zeros off
        the valid outputs, so the garbage positions never contribute to a gradient)."""
        O = g.shape[1]
        buf = g.new_zeros(O, margin + self.M)
        buf[:, margin:].view(O, self.N, self.Hp, self.Wp)[:, :, :self.Ho, :self.Wo] = g.transpose(0, 1)
        return buf

    def out_crop(self, buf):
        """flat (O, N*Hp*Wp) on the padded grid -> (N, O, Ho, Wo) contiguous."""
        O = buf.shape[0]
        return buf.view(O, self.N, self.Hp, self.Wp)[:, :, :self.Ho, :self.Wo].transpose(0, 1).contiguous()

    def gather(self, buf, length, full):
        """im2col on the flat layout, one copy: rows (i, j, k) = buf[k, off_ij : off_ij + length] over all taps
        (full), or rows (j, k) = buf[k, j*dw : j*dw + length] over the taps of one kernel row."""
        K, L = buf.shape
        if full:
            v = buf.as_strided((self.kh, self.kw, K, length), (self.dh * self.Wp, self.dw, L, 1))
        else:
            v = buf.as_strided((self.kw, K, length), (self.dw, L, 1))
        return v.reshape(-1, length)

    def blocks(self, w2, mode):
        """Weight matrices and column offsets of the products, from w2 (A, kh, kw, B): one (A, kh*kw*B) at offset 0
        ("full"), kh matrices (A, kw*B) at the kernel rows' offsets ("row"), kh*kw matrices (A, B) at the taps'
        offsets ("flat")."""
        A = w2.shape[0]
        if mode == "full":
            return [(w2.reshape(A, -1), 0)]
        if mode == "row":
            return [(w2[:, i].reshape(A, -1), base) for i, base in enumerate(self.bases)]
        w2 = w2.reshape(A, self.kh * self.kw, -1)
        return [(w2[:, t], off) for t, off in enumerate(self.offs)]

    def unfold_args(self):
        return dict(kernel_size=(self.kh, self.kw), dilation=(self.dh, self.dw),
                    padding=(self.ph, self.pw), stride=(self.sh, self.sw))


def _sum_products(acc, blocks, cols, length):
    """acc = sum over blocks of W_b @ cols[:, base_b : base_b + length] (matrix products into acc, in place)."""
    for k, (wb, base) in enumerate(blocks):
        acc.addmm_(wb, cols[:, base:base + length], beta=1 if k else 0)
    return acc


def prepare_input(x, geo):
    """x (N, C, H, W) as the products read it: on the shift path the padded flat buffer (C, M) or its im2col
    (kh*kw*C, Mv); torch's unfold columns (N, C*kh*kw, L) on the strided path."""
    if not geo.shift:
        return unfold(x, **geo.unfold_args())
    xs = geo.pad_flat(x, 0)
    return geo.gather(xs, geo.Mv, True) if geo.x_mode == "full" else xs


def prepare_output(g, geo):
    """An output-shaped g (N, O, Ho, Wo) as the products read it. Shift path: (g on the padded grid (O, Mv), and
    its im2col with flipped taps or None): rows of tap t' hold g shifted by -off_t, t the tap opposite to t'.
    Strided path: (N, O, L)."""
    if not geo.shift:
        return g.reshape(geo.N, g.shape[1], -1)
    margin = 0 if geo.g_mode == "flat" else geo.last       # a zero margin in front, as long as the largest shift
    gm = geo.out_flat(g, margin)
    plain = gm[:, margin:margin + geo.Mv]
    if geo.g_mode == "flat":
        return plain, None
    if geo.g_mode == "full":
        return plain, geo.gather(gm, geo.M, True)
    return plain, geo.gather(gm, geo.bases[-1] + geo.M, False)


def conv2d_forward(xs, w, geo, bias=None):
    """y[n, o] = sum_{c,i,j} w[o, c, i, j] x[n, c, s*y + d*i - p, s*x + d*j - p] (+ bias[o])."""
    O = w.shape[0]
    if not geo.shift:
        y = w.reshape(O, -1) @ xs                                        # (N, O, Ho*Wo)
        if bias is not None:
            y += bias.view(1, O, 1)
        return y.view(geo.N, O, geo.Ho, geo.Wo)
    out = xs.new_empty(O, geo.M)
    acc = _sum_products(out[:, :geo.Mv], geo.blocks(w.permute(0, 2, 3, 1), geo.x_mode), xs, geo.Mv)
    if bias is not None:
        acc += bias.view(O, 1)
    return geo.out_crop(out)


def conv2d_input_grad(gs, w, geo):
    """dx = transposed convolution of the output gradient with w: dx[n, c] = sum_{o,i,j} w[o, c, i, j] g[n, o, ...]."""
    O = w.shape[0]
    if not geo.shift:
        cols = w.reshape(O, -1).t() @ gs                                 # (N, C*kh*kw, Ho*Wo)
        return fold(cols, (geo.H, geo.W), **geo.unfold_args())
    plain, gcols = gs
    if gcols is None:                                                    # scatter each tap back, in place
        dx = plain.new_zeros(geo.C, geo.M)
        for wt, off in geo.blocks(w.permute(1, 2, 3, 0), "flat"):
            dx[:, off:off + geo.Mv].addmm_(wt, plain)
        return geo.crop_flat(dx)
    dx = gcols.new_empty(geo.C, geo.M)                                   # gather: the kernel flipped
    _sum_products(dx, geo.blocks(w.flip(2, 3).permute(1, 2, 3, 0), geo.g_mode), gcols, geo.M)
    return geo.crop_flat(dx)


def conv2d_weight_grad(gs, xs, geo):
    """dw[o, c, i, j] = sum_{n, y, x} g[n, o, y, x] x[n, c, s*y + d*i - p, s*x + d*j - p]."""
    if not geo.shift:
        O = gs.shape[1]
        return (gs @ xs.transpose(1, 2)).sum(0).view(O, geo.C, geo.kh, geo.kw)
    g, gcols = gs
    O, C, kh, kw = g.shape[0], geo.C, geo.kh, geo.kw
    if geo.x_mode == "full":                                             # one product with x's im2col
        return (g @ xs.t()).view(O, kh, kw, C).permute(0, 3, 1, 2)
    if geo.g_mode == "full":                                             # one product with g's (flipped) im2col
        return (gcols @ xs.t()).view(kh, kw, O, C).flip(0, 1).permute(2, 3, 0, 1)
    dw = g.new_empty(kh, kw, O, C)
    if geo.g_mode == "row":                                              # one product per (flipped) kernel row
        for i, base in enumerate(geo.bases):
            dw[kh - 1 - i] = (gcols[:, base:base + geo.M] @ xs.t()).view(kw, O, C).flip(0)
    else:                                                                # one product per tap
        for t, off in enumerate(geo.offs):
            dw.view(-1, O, C)[t] = g @ xs[:, off:off + geo.Mv].t()
    return dw.permute(2, 3, 0, 1)


# ------------------------------------------------------------------------------------------------------- the ops

def conv_op(prev, x_shape, out_channels, kernel_size, stride, padding, dilation, fast=True):
    """The op a convolution of inputs shaped ``x_shape`` runs: ``prev`` again when nothing changed (it keeps its
    work buffers), else a new one: ``ExactConv`` unless ``fast``, else the fastest kind that applies (see the
    module docstring)."""
    key = (tuple(x_shape), out_channels, kernel_size, stride, padding, dilation, fast)
    if prev is not None and prev.key == key:
        return prev
    geo = ConvGeometry(x_shape, out_channels, kernel_size, stride, padding, dilation)   # checks the sizes
    op = choose_op(geo)(geo) if fast else ExactConv(geo)
    op.key = key
    return op


def choose_op(geo):
    """The fastest op for this geometry (measured on a 2-core CPU: benchmarks/bench_mp2_conv.py)."""
    k, s, d = (geo.kh, geo.kw), (geo.sh, geo.sw), (geo.dh, geo.dw)
    if winograd_applies(geo.C, geo.O, k, s, d):
        return WinogradConv
    if geo.shift and geo.kh * geo.kw * geo.O <= geo.C and geo.ph <= geo.dh * (geo.kh - 1) \
            and geo.pw <= geo.dw * (geo.kw - 1):
        return OutputSideConv
    if d == (1, 1) and (not geo.shift or geo.kh * geo.kw * geo.C <= geo.O):
        return Im2colConv
    return DirectConv


class DirectConv:
    """The shift and unfold paths above."""

    def __init__(self, geo):
        self.geo = geo

    def forward(self, x, w, bias):
        self.xs = prepare_input(x, self.geo)
        return conv2d_forward(self.xs, w, self.geo, bias)

    def backward(self, grad, w, with_bias=True):
        gs = prepare_output(grad, self.geo)
        db = grad.sum((0, 2, 3)) if with_bias else None
        return conv2d_input_grad(gs, w, self.geo), conv2d_weight_grad(gs, self.xs, self.geo), db


class Im2colConv:
    """Strided convolution (dilation 1) on a channels-last padded copy of the input: its windows copied into one
    im2col matrix cols (positions, kh*kw*C); the input gradient's columns go back with overlap_add."""

    def __init__(self, geo):
        g = self.geo = geo
        rows = g.sh * max(-(-(g.ph + g.H) // g.sh), g.Ho + -(-g.kh // g.sh) - 1)    # whole strides, room for the
        cols = g.sw * max(-(-(g.pw + g.W) // g.sw), g.Wo + -(-g.kw // g.sw) - 1)    # input and for overlap_add
        self.size = (rows, cols)
        self.ws = Workspace()

    def forward(self, x, w, bias):
        # y[(n, u, v), o] = bias[o] + sum_{(i, j, c)} cols[(n, u, v), (i, j, c)] w[o, c, i, j]
        g, ws = self.geo, self.ws
        xp = padded(ws, "xp", x, self.size, (g.ph, g.pw))
        self.cols = ws.get("cols", (g.N, g.Ho, g.Wo, g.kh, g.kw, g.C), x)
        self.cols.copy_(windows(xp, (g.kh, g.kw), (g.sh, g.sw), (g.Ho, g.Wo)))
        cols, wm = self.cols.view(g.N * g.Ho * g.Wo, -1), w.permute(2, 3, 1, 0).reshape(-1, g.O)
        y = cols @ wm if bias is None else bias.addmm(cols, wm)
        return y.view(g.N, g.Ho, g.Wo, g.O).permute(0, 3, 1, 2)

    def backward(self, grad, w, with_bias=True):
        # dw = cols^T grad,  dcols = grad w^T,  dx = dcols' windows added back where they were taken,  db = sum of grad
        g, ws = self.geo, self.ws
        gm = nhwc(grad).reshape(-1, g.O)
        cols, wm = self.cols.view(gm.shape[0], -1), w.permute(2, 3, 1, 0).reshape(-1, g.O)
        dw = (cols.t() @ gm).view(g.kh, g.kw, g.C, g.O).permute(3, 2, 0, 1)
        dcols = ws.get("dcols", self.cols.shape, grad)
        dcols.view(cols.shape).addmm_(gm, wm.t(), beta=0)
        dxp = overlap_add(grad.new_empty(g.N, *self.size, g.C), dcols, (g.sh, g.sw))
        db = gm.sum(0) if with_bias else None
        return dxp[:, g.ph:g.ph + g.H, g.pw:g.pw + g.W].permute(0, 3, 1, 2), dw, db


class OutputSideConv:
    """Stride 1 with few output channels (kh*kw*O <= C, e.g. the last 64 -> 3 layer): every input position's
    products with all kh*kw taps in one GEMM, P = x (positions, C) @ w (C, kh*kw*O), and y the sum of P's kh*kw
    shifted views. Backward reads the (narrow) output gradient's windows once: dx = that im2col @ flipped kernel,
    dw = x^T @ that im2col. Needs padding <= d*(k-1), i.e. no output without an input under the kernel."""

    def __init__(self, geo):
        g = self.geo = geo
        self.size = (g.H + 2 * g.ph, g.W + 2 * g.pw)                        # x, zero-padded
        self.q = (g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw)       # padding of g for its windows
        self.gsize = (g.H + g.dh * (g.kh - 1), g.W + g.dw * (g.kw - 1))
        self.ws = Workspace()

    def forward(self, x, w, bias):
        # P[n, s, t, i, j, o] = sum_c x_pad[n, s, t, c] w[o, c, i, j]
        # y[n, u, v] = bias + sum_ij P[n, u+di, v+dj, i, j]
        g, ws = self.geo, self.ws
        xp = padded(ws, "xp", x, self.size, (g.ph, g.pw))
        P = ws.get("P", (g.N, *self.size, g.kh, g.kw, g.O), x)
        P.view(-1, g.kh * g.kw * g.O).addmm_(xp.view(-1, g.C), w.permute(1, 2, 3, 0).reshape(g.C, -1), beta=0)
        y = None
        for i in range(g.kh):
            for j in range(g.kw):
                tap = P[:, g.dh * i:g.dh * i + g.Ho, g.dw * j:g.dw * j + g.Wo, i, j]
                if y is None:
                    y = tap.clone() if bias is None else tap + bias
                else:
                    y += tap
        self.x = x
        return y.permute(0, 3, 1, 2)

    def backward(self, grad, w, with_bias=True):
        # G[n, a, b, i', j', o] = g_pad[n, a + d*i', b + d*j', o];  dx = G @ w flipped,  dw = x^T G (flipped back)
        g, ws = self.geo, self.ws
        gp = padded(ws, "gp", grad, self.gsize, self.q)
        G = ws.get("G", (g.N, g.H, g.W, g.kh, g.kw, g.O), grad)
        G.copy_(windows(gp, (g.kh, g.kw), (1, 1), (g.H, g.W), (g.dh, g.dw)))
        G = G.view(-1, g.kh * g.kw * g.O)
        dx = G @ w.flip(2, 3).permute(2, 3, 0, 1).reshape(-1, g.C)
        dw = (G.t() @ nhwc(self.x).reshape(-1, g.C)).view(g.kh, g.kw, g.O, g.C).flip(0, 1).permute(2, 3, 0, 1)
        db = grad.sum((0, 2, 3)) if with_bias else None
        return dx.view(g.N, g.H, g.W, g.C).permute(0, 3, 1, 2), dw, db
