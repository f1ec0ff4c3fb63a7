"""Classical references a trained model is measured against, on the same noisy images in the same run.

BM3D (Dabov et al., 2007) through the ``bm3d`` package, an optional extra (``pip install 'n2n-tui[bm3d]'``), imported
on first use. Colour images use CBM3D (``bm3d_rgb``, opponent colour space). BM3D needs the noise's standard
deviation: the true one for ``gaussian:SIGMA``, otherwise an estimate from the noisy image
(``skimage.restoration.estimate_sigma``), since the other noises are not Gaussian.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import N2NError
from .noise import parse_noise

BASELINES = ("bm3d",)
BM3D_MIN_SIDE = 16  # BM3D's blocks are 8 px and it searches around them: smaller images are mirrored up to this


class BaselineUnavailable(N2NError, RuntimeError):
    """The baseline's package is not installed; the message says how to install it."""


def require(name: str) -> None:
    """Fail early (before any work) if baseline ``name`` cannot run here."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of: {', '.join(BASELINES)}")
    try:
        import bm3d  # noqa: F401
    except ImportError as e:
        raise BaselineUnavailable(f"--baseline bm3d needs the bm3d package ({e}); install it with "
                                  "pip install 'n2n-tui[bm3d]'") from None


def noise_sigma(noisy: np.ndarray, noise: str) -> float:
    """The noise standard deviation BM3D is told, on [0, 1] values."""
    spec = parse_noise(noise)
    if spec.name == "gaussian" and spec.level is not None:
        return spec.level / 255.0
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(noisy, average_sigmas=True, channel_axis=-1))


def bm3d_denoise(noisy: torch.Tensor, noise: str) -> torch.Tensor:
    """BM3D of one image (3, H, W) in [0, 1]; returns (3, H, W) in [0, 1]."""
    import bm3d

    z = noisy.permute(1, 2, 0).double().numpy()
    h, w = z.shape[:2]
    z = np.pad(z, ((0, max(0, BM3D_MIN_SIDE - h)), (0, max(0, BM3D_MIN_SIDE - w)), (0, 0)), mode="symmetric")
    out = bm3d.bm3d_rgb(z, max(noise_sigma(z, noise), 1e-6))[:h, :w]
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).permute(2, 0, 1).float()
