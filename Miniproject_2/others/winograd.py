"""3x3 stride-1 convolutions with Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2015), forward and backward.

A 4x4 block of outputs needs a 6x6 block d of input and the 3x3 kernel g; instead of 4*4*9 = 144 multiplications,

    y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise on 6x6: 36 multiplications)

with the constant matrices below (y[i] = sum_k g[k] d[i + k], a correlation like torch's conv2d). Over channels
the elementwise product becomes a sum over c, so for every one of the 36 positions xi of the 6x6 "Winograd domain"
the layer is one matrix product

    M[xi] (tiles, O) = V[xi] (tiles, C) @ U[xi] (C, O),   V = B^T d B per input tile,  U = G g G^T per kernel,

4x fewer multiply-adds than the direct convolution, and each product is one large GEMM. Every step is linear, so
the backward pass runs the adjoint of each step in reverse, in the same domain:

    dM = A dY A^T,  dU = V^T dM,  dV = dM U^T,  dd = B dV B^T (added back over the overlapping 6x6 input tiles),
    dg = G^T dU G,

i.e. the exact gradient of the computed forward. The transforms are small matrices applied to all tiles at once
(``transform``). Rounding: the products in the transform domain are larger than the outputs they cancel down to,
so float32 rounding grows: the errors of y and dx against float64 are several times those of torch's float32
conv2d on the CPU, and both stay inside torch.testing's default float32 tolerance against the exact result (a test
checks 16-128 channels). On CUDA torch computes conv2d in TF32 by default while our products stay float32, so there
ours are the more accurate. Weight gradients are as accurate as torch's. Figures: benchmarks/bench_mp2_conv.py
--accuracy, recorded in docs/benchmarks.md.

Threads: torch splits an elementwise copy between its threads by contiguous ranges of the output, and a batched
matrix product by contiguous ranges of the batch. So the batch of images is cut into PARTS parts that lead the layout
of every buffer (part, Winograd position, tiles, channels), and every product is batched over (part, ...): with two
threads, thread k works on part k in every step, reading what it wrote itself the step before. Without this each step
read about half of its input from the other core's caches. That costs little when the two cores share a cache, and a
lot when they do not, as when a virtual machine's host runs its two CPUs on different dies (the core-to-core round
trip: benchmarks/probe_conv_modes.py); on one die the split is a little faster too (docs/benchmarks.md).
"""

from .tiles import Workspace, nhwc, overlap_add, padded, windows

# Interpolation points 0, 1, -1, 1/2, -2 (and infinity): a smaller float32 error than the usual 0, +-1, +-2 (Lavin &
# Gray), whose larger entries (up to 8 in A^T) cancel more (Barabasz et al., "Error analysis and improving the
# accuracy of Winograd convolution for deep neural networks", 2020; docs/benchmarks.md).
BT = ((1, -3 / 2, -2, 3 / 2, 1, 0),
      (0, -1, 1 / 2, 5 / 2, 1, 0),
      (0, 1, -5 / 2, 1 / 2, 1, 0),
      (0, -2, -1, 2, 1, 0),
      (0, 1 / 2, -1, -1 / 2, 1, 0),
      (0, 1, -3 / 2, -2, 3 / 2, 1))
G = ((1, 0, 0),
     (1 / 3, 1 / 3, 1 / 3),
     (-1 / 3, 1 / 3, -1 / 3),
     (-16 / 15, -8 / 15, -4 / 15),
     (1 / 15, -2 / 15, 4 / 15),
     (0, 0, 1))
AT = ((1, 1, 1, 1, 1, 0),
      (0, 1, -1, 1 / 2, -2, 0),
      (0, 1, 1, 1 / 4, 4, 0),
      (0, 1, -1, 1 / 8, -8, 1))


BIAS = 1 * 6 + 1      # the Winograd-domain position (1, 1): A^T e_1 = (1, 1, 1, 1), so it reaches every output
PARTS = 2             # the batch is split in two: see the module docstring


def winograd_applies(C, O, kernel_size, stride, dilation, min_channels=16):
    """3x3, stride 1, no dilation, and both sides wide enough for the products to outweigh the transforms."""
    return kernel_size == (3, 3) and stride == (1, 1) and dilation == (1, 1) and min(C, O) >= min_channels


def parts(N):
    """How many parts the batch is split into (see the module docstring): PARTS when they are equal, else 1."""
    return PARTS if N % PARTS == 0 else 1


def transform(mat, src, out, tmp, P):
    """out[p, a, b] = sum_{i, j} mat[a, i] mat[b, j] src[p, i, j] for each of the P parts p and every trailing index:
    (P, k, k, ...) -> (P, m, m, ...), i.e. mat @ tile @ mat^T on all tiles at once, as two batched matrix products
    (rows, then columns) whose batches start with the part."""
    m, k = mat.shape
    n = src.numel() // (P * k * k)
    rows = tmp.view(-1)[:P * m * k * n].view(P, m, k * n)
    # rows[p, a, j] = sum_i mat[a, i] src[p, i, j], then out[p, a, b] = sum_j mat[b, j] rows[p, a, j]
    rows.baddbmm_(mat.expand(P, m, k), src.view(P, k, k * n), beta=0)
    out.view(P * m, m, n).baddbmm_(mat.expand(P * m, m, k), rows.view(P * m, k, n), beta=0)
    return out


class WinogradConv:
    """Conv2d(C -> O, 3x3, stride 1, padding p) of one input shape (a conv.ConvGeometry), F(4x4, 3x3); keeps its
    work buffers."""

    def __init__(self, geo):
        self.N, self.C, self.H, self.W, self.O = geo.N, geo.C, geo.H, geo.W, geo.O
        self.pad, self.Ho, self.Wo = (geo.ph, geo.pw), geo.Ho, geo.Wo
        self.TH, self.TW = -(-self.Ho // 4), -(-self.Wo // 4)          # 4x4 output tiles
        self.P = parts(self.N)                                          # parts of the batch, Np images each
        self.Np, self.T = self.N // self.P, self.N * self.TH * self.TW
        self.Tp = self.T // self.P                                      # tiles per part
        self.size = (4 * self.TH + 4, 4 * self.TW + 4)                  # padded grid: whole tiles, +1 for overlap-add
        self.ws = Workspace()
        self.mats = None

    def _mats(self, like):
        if self.mats is None or self.mats[0].dtype != like.dtype or self.mats[0].device != like.device:
            bt, g, at = (like.new_tensor(m) for m in (BT, G, AT))
            gg = (g[:, None, :, None] * g[None, :, None, :]).reshape(36, 9)       # G (x) G: vec(G w G^T) = gg vec(w)
            self.mats = (bt, gg, at)
        return self.mats

    def _tiles(self, buf, k):
        """The k x k tiles (at stride 4) of an (N, Hp, Wp, C) buffer, indexed (part, k, k, image, TH, TW, C)."""
        P, Np, TH, TW, C = self.P, self.Np, self.TH, self.TW, buf.shape[-1]
        return windows(buf, (k, k), (4, 4), (TH, TW)).view(P, Np, TH, TW, k, k, C).permute(0, 4, 5, 1, 2, 3, 6)

    def forward(self, x, w, bias):
        # V = B^T d B (tiles d), U = G w G^T, M[xi] = V[xi] @ U[xi], y = A^T M A (+ bias); each part on its own
        bt, gg, at = self._mats(x)
        ws, C, O, P, Np, Tp, TH, TW = self.ws, self.C, self.O, self.P, self.Np, self.Tp, self.TH, self.TW
        xp = padded(ws, "xp", x, self.size, self.pad)
        d = ws.get("d", (P, 6, 6, Np, TH, TW, C), x).copy_(self._tiles(xp, 6))
        tmp = ws.get("tmp", (36 * self.T * max(C, O),), x)
        self.V = transform(bt, d, ws.get("V", (P, 36, Tp, C), x), tmp, P)
        self.U = ws.get("U", (P, 36, C, O), x)                          # one copy per part, written by its thread
        w9 = w.permute(2, 3, 1, 0).reshape(9, C * O)
        self.U.view(P, 36, C * O).baddbmm_(gg.expand(P, 36, 9), w9.expand(P, 9, C * O), beta=0)
        M = ws.get("M", (P, 36, Tp, O), x)
        M.view(P * 36, Tp, O).baddbmm_(self.V.view(P * 36, Tp, C), self.U.view(P * 36, C, O), beta=0)
        if bias is not None:
            M[:, BIAS] += bias              # column 1 of A^T (the point 1) is all ones: +bias on all 16 outputs
        Y = transform(at, M, ws.get("Y", (P, 4, 4, Np, TH, TW, O), x), tmp, P)
        y = x.new_empty(self.N, 4 * TH, 4 * TW, O)
        self._tiles(y, 4).copy_(Y)
        return y[:, :self.Ho, :self.Wo].permute(0, 3, 1, 2)

    def backward(self, grad, w, with_bias=True):
        # dM = A dY A^T, dU = V^T dM, dV = dM U^T, dd = B dV B^T added over the overlapping tiles, dw = G^T dU G,
        # dbias = dM at the bias's position summed over tiles (= the sum of grad)
        bt, gg, at = self._mats(grad)
        ws, C, O, P, Np, Tp, TH, TW = self.ws, self.C, self.O, self.P, self.Np, self.Tp, self.TH, self.TW
        tmp = ws.get("tmp", (36 * self.T * max(C, O),), grad)
        if (self.Ho, self.Wo) == (4 * TH, 4 * TW):
            g = nhwc(grad)
        else:                                                           # zeros beyond the outputs of the last tiles
            g = padded(ws, "gp", grad, (4 * TH, 4 * TW), (0, 0))
        dY = ws.get("Y", (P, 4, 4, Np, TH, TW, O), grad).copy_(self._tiles(g, 4))
        dM = transform(at.t(), dY, ws.get("M", (P, 36, Tp, O), grad), tmp, P)
        dU = (self.V.view(P * 36, Tp, C).transpose(1, 2) @ dM.view(P * 36, Tp, O)).view(P, 36 * C * O).sum(0)
        dw = (gg.t() @ dU.view(36, C * O)).view(3, 3, C, O).permute(3, 2, 0, 1)
        dV = ws.get("d", (P, 6, 6, Np, TH, TW, C), grad)
        dV.view(P * 36, Tp, C).baddbmm_(dM.view(P * 36, Tp, O), self.U.view(P * 36, C, O).transpose(1, 2), beta=0)
        dd = transform(bt.t(), dV, dV, tmp, P)                           # in place: rows go to tmp first
        dxp = grad.new_empty(self.N, *self.size, C)
        overlap_add(dxp.view(P, Np, *self.size, C), dd.permute(0, 3, 4, 5, 1, 2, 6), (4, 4))
        ph, pw = self.pad
        db = dM[:, BIAS].sum((0, 1)) if with_bias else None
        return dxp[:, ph:ph + self.H, pw:pw + self.W].permute(0, 3, 1, 2), dw, db
