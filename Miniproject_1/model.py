"""Miniproject 1: a Noise2Noise denoiser in PyTorch, behind the course grader's ``Model`` interface.

Grader contract: ``Model()``, ``load_pretrained_model()``, ``train(train_input, train_target, num_epochs)`` and
``predict(test_input)`` on (N, 3, H, W) tensors in [0, 255] (uint8 or float).
Engine extras: ``train_step``, ``learning_rate``, ``batch_size``, ``HYPERPARAMETERS`` and ``set_hyperparameter``,
``save``, ``state_dict``/``load_state_dict`` (full training state, optimizer included).
"""
from __future__ import annotations

import io
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

if __package__:  # imported as the package Miniproject_1 (the repository, the engine, the course's test.py)
    from .others.finetune import fine_tune
    from .others.unet import UNet
else:  # imported as a top-level ``model`` with Miniproject_1/ on sys.path (the course grader): our own others/ is
    # then importable by name; importlib keeps this file's import statements to torch and the standard library for
    # checkers that cannot tell our own top-level ``others`` from a third-party package (as in Miniproject_2)
    import importlib

    fine_tune = importlib.import_module("others.finetune").fine_tune
    UNet = importlib.import_module("others.unet").UNet

BESTMODEL = Path(__file__).resolve().parent / "bestmodel.pth"
FORMAT = "n2n-tui/miniproject1"
LOSSES = {"l1": nn.L1Loss, "l2": nn.MSELoss}
MAX_WIDTH = 4096   # channels of a level: far above what a 32x32 denoiser needs, far below a memory blow-up
MAX_LEVELS = 8     # levels of the U-Net (each pools by 2; the model pads its input to fit)


def _check_images(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"{name} must be shaped (N, 3, H, W), got {tuple(t.shape)}")
    if t.dtype != torch.uint8 and not t.dtype.is_floating_point:
        raise ValueError(f"{name} must be uint8 or float in [0, 255], got dtype {t.dtype}")
    if t.shape[0] == 0 or t.shape[2] == 0 or t.shape[3] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")


def _check_pair(inputs, targets) -> None:
    _check_images("train_input", inputs)
    _check_images("train_target", targets)
    if inputs.shape != targets.shape:
        raise ValueError(f"train_input {tuple(inputs.shape)} and train_target {tuple(targets.shape)} differ in shape")


def _unreadable(e: Exception, head: bytes) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in words (not PyTorch's migration hint)."""
    text = str(e).strip()
    if head != b"PK\x03\x04" and head[:1] == b"\x80":
        why = "a plain pickle, not a PyTorch zip file: Miniproject_2 weights, or another program's file?"
    elif "Weights only load failed" in text:
        why = "it holds Python objects besides tensors, so it was not written by Model.save; refused unread"
    else:
        why = text.splitlines()[0][:160] if text else type(e).__name__
    return f"not a readable checkpoint ({why})"


class Model:
    """U-Net denoiser trained with Adam on pairs of noisy images (Noise2Noise).

    ``loss`` is "l1" by default: the blind ``mix`` training noise contains impulse noise, for which the median (L1)
    recovers the clean image where the mean (L2) would be pulled towards the impulse colours (paper, section 3.3).
    """

    # Live hyper-parameters: what may change between two steps, with its valid range (engine extra; the same table
    # as Miniproject_2's, a test keeps the copies equal). name: (type, low, high, low is excluded, help)
    HYPERPARAMETERS = {
        "lr": (float, 0.0, 10.0, True, "Adam's learning rate"),
        "weight_decay": (float, 0.0, 1.0, False, "L2 weight decay, added to the gradient by Adam"),
        "batch_size": (int, 1, 65536, False, "pairs per step"),
        "beta1": (float, 0.0, 0.9999, False, "Adam's first-moment decay"),
        "beta2": (float, 0.0, 0.99999, False, "Adam's second-moment decay"),
        "grad_clip": (float, 0.0, 1e6, False, "largest gradient norm before a step (0: no clipping)"),
    }

    def __init__(self, device: str | torch.device | None = None, lr: float = 1e-3, batch_size: int = 32, *,
                 widths: Sequence[int] = (32, 48, 64), loss: str = "l1") -> None:
        self.check_options(widths=widths, loss=loss)
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.config = {"widths": [int(w) for w in widths], "loss": loss}
        self.batch_size = int(batch_size)
        self.net = UNet(tuple(widths)).to(self.device, memory_format=torch.channels_last)
        self.criterion = LOSSES[loss]()
        # betas as in the Noise2Noise paper (beta2 = 0.99 adapts faster than the default 0.999)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, betas=(0.9, 0.99))
        self.grad_clip = 0.0    # largest gradient norm (0: none)
        self.augment = True     # random flips/rotations of each batch
        self.swap_pairs = True  # swap input and target half the time: valid only for noisy/noisy (N2N) pairs
        self.loaded = False     # weights from a checkpoint: train() fine-tunes them (others/finetune.py)
        self.last_fine_tune: dict | None = None

    # ------------------------------------------------------------------------------------------------ engine extras
    @staticmethod
    def check_options(*, widths: Sequence[int] = (32, 48, 64), loss: str = "l1") -> None:
        """ValueError naming what is wrong with these network options; nothing is built (sweep specs, checkpoints)."""
        if isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)) \
                or not 1 <= len(widths) <= MAX_LEVELS \
                or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_WIDTH for w in widths):
            raise ValueError(f"widths must be 1 to {MAX_LEVELS} integers from 1 to {MAX_WIDTH}, got {widths!r}"[:200])
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")

    @classmethod
    def check_hyperparameter(cls, name: str, value) -> int | float:
        """``value`` as the hyper-parameter's type, or ValueError naming what is wrong."""
        if name not in cls.HYPERPARAMETERS:
            raise ValueError(f"unknown hyper-parameter {name!r} (live ones: {', '.join(cls.HYPERPARAMETERS)})")
        kind, low, high, open_low, _ = cls.HYPERPARAMETERS[name]
        try:
            v = kind(value)
            if kind is int and v != float(value):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
        if v != v or (v <= low if open_low else v < low) or v > high:
            raise ValueError(f"{name} must be in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}")
        return v

    def hyperparameters(self) -> dict:
        group = self.optimizer.param_groups[0]
        return {"lr": group["lr"], "weight_decay": float(group["weight_decay"]), "batch_size": self.batch_size,
                "beta1": group["betas"][0], "beta2": group["betas"][1], "grad_clip": self.grad_clip}

    def set_hyperparameter(self, name: str, value) -> int | float:
        """Change one live hyper-parameter (takes effect at the next step); returns the value set."""
        v = self.check_hyperparameter(name, value)
        for group in self.optimizer.param_groups:
            if name == "lr":
                group["lr"] = v
            elif name == "weight_decay":
                group["weight_decay"] = v
            elif name in ("beta1", "beta2"):
                b1, b2 = group["betas"]
                group["betas"] = (v, b2) if name == "beta1" else (b1, v)
        if name == "batch_size":
            self.batch_size = v
        elif name == "grad_clip":
            self.grad_clip = v
        return v

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        value = float(value)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"learning rate must be a positive finite number, got {value}")
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def _to_unit(self, t: torch.Tensor) -> torch.Tensor:
        """[0, 255] uint8/float on any device -> float32 in [0, 1] on ours, channels-last (never modifies the caller's
        tensor, which may already be float on our device)."""
        x = t.to(self.device, torch.float32, non_blocking=True) / 255.0
        return x.contiguous(memory_format=torch.channels_last)

    def _augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same random dihedral transform for the whole batch (a flip, then 0 to 3 quarter turns) and, with
        ``swap_pairs``, input and target swapped half the time: a Noise2Noise pair is symmetric, so the swap is a free
        second pair (turn it off for clean targets). Uses the global torch RNG (follows torch.manual_seed)."""
        if not self.augment:
            return x, y
        r = int(torch.empty(1).random_(0, 16).item())   # 4 random bits: a flip, a quarter-turn count, a swap
        if r & 1:
            x, y = x.flip(3), y.flip(3)
        if r & 6:
            x, y = x.rot90((r >> 1) & 3, (2, 3)), y.rot90((r >> 1) & 3, (2, 3))
        if r & 8 and self.swap_pairs:
            x, y = y, x
        return x, y

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad the bottom and right edges up to the multiple of the network's poolings (mirrored where it can)."""
        h, w = x.shape[-2:]
        m = self.net.multiple
        ph, pw = (-h) % m, (-w) % m
        if not (ph or pw):
            return x
        return nn.functional.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimizer step on one batch of noisy pairs in [0, 255]; returns the loss (on [0, 1] values)."""
        _check_pair(inputs, targets)
        x, y = self._augment(self._to_unit(inputs), self._to_unit(targets))
        self.net.train()
        h, w = x.shape[-2:]
        loss = self.criterion(self.net(self._pad(x))[:, :, :h, :w], y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.optimizer.step()
        return float(loss.item())

    def state_dict(self, with_optimizer: bool = True) -> dict:
        """A snapshot (copies, on the CPU) of the weights (a dict of the network's named tensors), the network
        configuration and optionally the optimizer state; plain tensors and numbers, so
        ``torch.load(weights_only=True)`` reads it back. The keys are Miniproject_2's: format, config, model,
        optimizer."""
        state = {
            "format": FORMAT,
            "config": dict(self.config),
            "model": {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()},
        }
        if with_optimizer:
            opt = self.optimizer.state_dict()
            opt["state"] = {i: {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v)
                                for k, v in s.items()} for i, s in opt["state"].items()}
            state["optimizer"] = opt
        return state

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("model"), dict):
            other = isinstance(state, dict) and "miniproject2" in str(state.get("format"))
            raise ValueError("a Miniproject_2 checkpoint, not a Miniproject_1 one" if other else
                             "not a Miniproject_1 checkpoint (missing or wrong 'format' field)")
        config = state.get("config")
        if not isinstance(config, dict):
            raise ValueError(f"checkpoint config is a {type(config).__name__}, expected a dict with 'widths' and 'loss'"
                             if config is not None else "checkpoint has no config (expected 'widths' and 'loss')")
        widths, loss = config.get("widths"), config.get("loss", self.config["loss"])
        if loss not in LOSSES:
            raise ValueError(f"checkpoint config has an unknown loss {loss!r} (known: {', '.join(LOSSES)})")
        try:
            self.check_options(widths=widths, loss=loss)
        except ValueError as e:
            raise ValueError(f"checkpoint config has no valid 'widths': {e}") from None
        # the file's own tensors must be the network its widths describe, before anything is built (shapes from a
        # network on the meta device, which allocates nothing): tampered widths cannot make us allocate gigabytes
        with torch.device("meta"):
            expected = UNet(tuple(widths)).state_dict()
        weights = state["model"]
        if set(weights) != set(expected) or any(not isinstance(weights[k], torch.Tensor)
                                                 or weights[k].shape != v.shape for k, v in expected.items()):
            raise ValueError(f"checkpoint weights do not fit the network its widths {list(widths)} describe")
        if list(widths) != self.config["widths"]:
            # the checkpoint's network differs from ours: rebuild to match it
            self.__init__(device=self.device, lr=self.learning_rate, batch_size=self.batch_size, widths=tuple(widths),
                          loss=loss)
        elif loss != self.config["loss"]:
            self.config["loss"] = loss
            self.criterion = LOSSES[loss]()
        try:
            self.net.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ValueError(f"checkpoint weights do not fit the network: {str(e).splitlines()[0]}") from None
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.loaded = True

    def save(self, path: str | os.PathLike, with_optimizer: bool = False) -> None:
        """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        buf = io.BytesIO()  # serialised in memory first: a full disk is then a plain OSError, not a zip-writer error
        torch.save(self.state_dict(with_optimizer), buf)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary readable file
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------------------------------------ grader API
    def load_pretrained_model(self, path: str | os.PathLike | None = None) -> None:
        """Load ``bestmodel.pth`` next to this file (or ``path``); tensors only (weights_only=True)."""
        path = Path(BESTMODEL if path is None else path)
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such checkpoint") from None
        if not head:
            raise ValueError(f"{path}: an empty file, not a checkpoint")
        try:
            with warnings.catch_warnings():  # torch warns about a foreign pickle before refusing it: one line is ours
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: {_unreadable(e, head)}") from None
        try:
            self.load_state_dict(state)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def train(self, train_input: torch.Tensor, train_target: torch.Tensor, num_epochs: int = 1) -> None:
        """Train on pairs of noisy images (N, 3, H, W) in [0, 255] for ``num_epochs`` shuffled passes. From weights
        loaded from a checkpoint (the grader's case) it fine-tunes them instead, and ends with the weights that do
        best on a held-out slice of the pairs, the loaded ones included (others/finetune.py)."""
        _check_pair(train_input, train_target)
        if self.loaded:
            self.last_fine_tune = fine_tune(self, train_input, train_target, num_epochs)
            return
        n = train_input.shape[0]
        for _ in range(int(num_epochs)):
            order = torch.randperm(n)
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                self.train_step(train_input[idx], train_target[idx])

    @torch.no_grad()
    def predict(self, test_input: torch.Tensor) -> torch.Tensor:
        """Denoise (N, 3, H, W) images in [0, 255], any H and W; returns float in [0, 255] on the input's device."""
        _check_images("test_input", test_input)
        self.net.eval()
        n, _, h, w = test_input.shape
        chunk = max(1, (1 << 20) // (h * w))  # about a million pixels per forward pass bounds the memory
        out = []
        for i in range(0, n, chunk):
            y = self.net(self._pad(self._to_unit(test_input[i:i + chunk])))[:, :, :h, :w]
            out.append(y.clamp_(0.0, 1.0).mul_(255.0).to(test_input.device).contiguous())
        return torch.cat(out)
