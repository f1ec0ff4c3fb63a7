"""Channels-last (NHWC) work buffers for the fast convolutions: a zero-padded copy of the input, its sliding windows
as a strided view, and the adjoint of taking windows (overlap-add).

Why channels-last: a window of a (N, H, W, C) buffer is a block whose innermost run is C contiguous numbers, so
copying windows out (im2col, Winograd tiles) moves long runs instead of single numbers at a stride, and the matrix
products that follow see one large (positions x channels) matrix. The tensors the convolutions return are NHWC in
memory too, seen through ``permute(0, 3, 1, 2)`` as the usual (N, C, H, W): every other block here works on any
strides, and the next convolution reads them without a transposing copy.
"""


class Workspace:
    """Buffers a layer keeps between calls (fresh large allocations cost page faults on every call): ``get(name,
    shape, like)`` returns the buffer ``name``, made anew (uninitialised, like ``like``'s dtype and device) only when
    its shape, dtype or device changed. Never hand one out as a result: the next call overwrites it."""

    def __init__(self):
        self.buffers = {}

    def get(self, name, shape, like):
        buf = self.buffers.get(name)
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[name] = like.new_empty(shape)
            self.buffers.pop(name + ".fresh", None)
        return buf

    def fresh(self, name):
        """True the first time it is asked after ``name`` was (re)made: e.g. to zero a border only once."""
        key = name + ".fresh"
        first = key not in self.buffers
        self.buffers[key] = False
        return first


def nhwc(x):
    """(N, C, H, W) -> the same numbers indexed (N, H, W, C) (a view; contiguous when x is channels-last in memory)."""
    return x.permute(0, 2, 3, 1)


def padded(ws, name, x, size, pad):
    """x (N, C, H, W) copied into a workspace buffer (N, Hp, Wp, C) = ``size`` at offset ``pad``, zeros around it
    (the border is zeroed once, when the buffer is made, and never written afterwards). Rows/columns of x that do
    not fit are dropped (the windows never reach them)."""
    N, C, H, W = x.shape
    (Hp, Wp), (ph, pw) = size, pad
    buf = ws.get(name, (N, Hp, Wp, C), x)
    h, w = min(H, Hp - ph), min(W, Wp - pw)
    if ws.fresh(name):
        buf.zero_()
    buf[:, ph:ph + h, pw:pw + w].copy_(nhwc(x)[:, :h, :w])
    return buf


def windows(buf, k, s, count, d=(1, 1)):
    """Sliding k x k windows of buf (N, Hp, Wp, C) at stride s, ``count`` = (To, Tw) of them: a view (N, To, Tw, kh,
    kw, C) whose [n, t, u, a, b] is buf[n, s*t + d*a, s*u + d*b] (k, s and the dilation d are pairs)."""
    N, _, _, C = buf.shape
    sn, sh, sw, sc = buf.stride()
    (kh, kw), (s_h, s_w), (To, Tw), (d_h, d_w) = k, s, count, d
    return buf.as_strided((N, To, Tw, kh, kw, C), (sn, s_h * sh, s_w * sw, d_h * sh, d_w * sw, sc),
                          buf.storage_offset())


def overlap_add(out, win, s):
    """The adjoint of ``windows``: out (..., Hp, Wp, C) = the sum of every window of ``win`` (..., To, Tw, kh, kw, C)
    placed at (s*t, s*u), for every index of the leading dims (e.g. N). Hp, Wp must be multiples of s with room for
    the last window rounded up to whole strides. Tap a of a window lands in stride block t + a // s at offset a % s,
    so the taps with the same (a // s, b // s) land on distinct positions: one strided copy or add per such group
    (ceil(k / s)^2 of them) instead of k^2."""
    *lead, To, Tw, kh, kw, C = win.shape
    (s_h, s_w), (Hp, Wp) = s, out.shape[-3:-1]
    blocks = out.view(*lead, Hp // s_h, s_h, Wp // s_w, s_w, C)
    L = len(lead)
    order = tuple(range(L)) + tuple(L + i for i in (0, 2, 1, 3, 4))     # (To, Tw, rows, cols, C) -> (To, rows, Tw, ...)
    for qh in range(-(-kh // s_h)):
        for qw in range(-(-kw // s_w)):
            rows, cols = min(s_h, kh - qh * s_h), min(s_w, kw - qw * s_w)
            src = win[..., qh * s_h:qh * s_h + rows, qw * s_w:qw * s_w + cols, :].permute(order)
            dst = blocks[..., qh:qh + To, :rows, qw:qw + Tw, :cols, :]
            if qh == 0 and qw == 0:
                dst.copy_(src)                                  # covers its blocks entirely: no need to zero them
                _zero_outside(blocks, To, Tw, rows, cols)
            else:
                dst.add_(src)
    return out


def _zero_outside(blocks, To, Tw, rows, cols):
    """Zero what the first group's copy did not write: blocks beyond (To, Tw), and the offsets past (rows, cols)."""
    nh, s_h, nw, s_w, _ = blocks.shape[-5:]
    if nh > To:
        blocks[..., To:, :, :, :, :].zero_()
    if nw > Tw:
        blocks[..., :To, :, Tw:, :, :].zero_()
    if rows < s_h:
        blocks[..., :To, rows:, :Tw, :, :].zero_()
    if cols < s_w:
        blocks[..., :To, :rows, :Tw, cols:, :].zero_()
