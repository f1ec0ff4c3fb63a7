"""A small U-Net for 32x32 patches, in the spirit of the Noise2Noise paper's network (Lehtinen et al., 2018, table 2):
3x3 convolutions with leaky ReLU (slope 0.1), max-pool down, nearest-neighbour up, skip connections by concatenation,
and the input concatenated before the last block. The paper goes down 5 times from 256x256; 32x32 patches only carry
two levels of context worth pooling for (8x8 at the bottom), and the CPU budget of the course asks for narrow layers.
The output is a residual added to the input, so an untrained network starts as the identity (a noisy-input PSNR, not
a grey image) and the layers only learn the correction.
"""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
    )


class UNet(nn.Module):
    """Fully convolutional: any H and W divisible by 2 ** len(widths - 1) (the model pads to that)."""

    def __init__(self, widths: tuple[int, ...] = (32, 48, 64), channels: int = 3):
        super().__init__()
        self.widths = tuple(widths)
        self.multiple = 2 ** (len(widths) - 1)
        self.down = nn.ModuleList()
        cin = channels
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            skip = widths[level] + (channels if level == 0 else 0)
            self.up.append(_block(cin + skip, widths[level]))
            cin = widths[level]
        self.head = nn.Conv2d(cin, channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def receptive_radius(self) -> int:
        """How far (pixels) an output pixel may see from its own position, an upper bound: 2 px per 3x3 convolution
        of a down block at its scale, one step of its scale per pooling and per upsampling, and the up blocks'
        convolutions (26 px for three levels, 58 for four). Tiled inference takes at least this much context."""
        levels = len(self.widths)
        down = sum(2 << i for i in range(levels))
        return down + sum((1 << i) + (1 << i) + (2 << i) for i in range(levels - 1))

    @torch.no_grad()
    def widen_from(self, narrow: UNet) -> None:
        """Take over the weights of a U-Net of the same depth and at most our widths, so that this network computes
        exactly what ``narrow`` does (a function-preserving widening, as in Net2Net, Chen et al. 2016, but with the
        new units added rather than copied): each old unit keeps its weights and ignores the new units (zero weights
        from them), and each new unit keeps its fresh random weights from every unit below it. The new units start
        as fresh features whose outputs nothing reads yet; training grows the connections out of them (their
        gradients are not zero), and no two units start alike, which copies would under Adam. Weights are copied in
        place: an optimizer built on our parameters keeps them."""
        old, new = narrow.widths, self.widths
        if len(old) != len(new) or any(o > n for o, n in zip(old, new)):
            raise ValueError(f"cannot widen a U-Net of widths {list(old)} into {list(new)}: the same number of levels "
                             "and no narrower level, please")
        ch = self.head.out_channels

        def inputs(widths) -> list[list[int]]:  # the parts each convolution's input is concatenated from, in order
            ups = [[widths[level + 1], widths[level]] + ([ch] if level == 0 else [])
                   for level in range(len(widths) - 2, -1, -1)]
            return [[ch]] + [[w] for w in widths[:-1]] + ups + [[widths[0]]]

        def copy(dst: nn.Conv2d, src: nn.Conv2d, parts_new: list[int], parts_old: list[int]) -> None:
            o = src.out_channels
            dst.weight[:o] = 0  # the old units read nothing from the new ones
            a = b = 0
            for n, m in zip(parts_new, parts_old):  # each old part at the start of its new, wider part
                dst.weight[:o, a:a + m] = src.weight[:, b:b + m]
                a, b = a + n, b + m
            dst.bias[:o] = src.bias

        def convs(net: UNet) -> list[list[nn.Conv2d]]:  # per block, in the order of inputs()
            return [[m for m in b if isinstance(m, nn.Conv2d)] for b in [*net.down, *net.up]] + [[net.head]]

        for dst, src, parts_new, parts_old in zip(convs(self), convs(narrow), inputs(new), inputs(old)):
            copy(dst[0], src[0], parts_new, parts_old)
            if len(dst) > 1:  # a block's second convolution reads its first
                copy(dst[1], src[1], [dst[0].out_channels], [src[0].out_channels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, block in enumerate(self.down):
            if i:
                h = nn.functional.max_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        skips.pop()  # the bottom level feeds the first up block directly
        for block in self.up:
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            s = skips.pop()
            if not skips:
                s = torch.cat([s, x], 1)
            h = block(torch.cat([h, s], 1))
        return x + self.head(h)
