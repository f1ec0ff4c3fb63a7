"""Pick the device without ``import torch``: CUDA when a tensor can be made there, else the CPU."""

import warnings

from torch import empty

_choice = None


def default_device():
    """'cuda' when a GPU is usable, else 'cpu' (checked once, silently)."""
    global _choice
    if _choice is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                empty(1, device="cuda")
                _choice = "cuda"
            except Exception:  # CPU-only build, no driver, no device: all mean "use the CPU"
                _choice = "cpu"
    return _choice
