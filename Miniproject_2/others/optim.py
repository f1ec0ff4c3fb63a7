"""Optimizers over ``(parameter, gradient)`` pairs, with the update rules of torch.optim.SGD and torch.optim.Adam.

Both update the parameters in place (so the modules keep seeing them), have ``step()``, ``zero_grad()``, a
settable ``lr`` and ``state_dict()`` / ``load_state_dict()`` with plain tensors and numbers.
"""

import math


def _pairs(params):
    pairs = [(p, g) for p, g in params]
    for p, g in pairs:
        if p.shape != g.shape:
            raise ValueError(f"parameter {tuple(p.shape)} and its gradient {tuple(g.shape)} differ in shape")
    return pairs


def _check_lr(lr):
    lr = float(lr)
    if not (lr >= 0.0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a finite number >= 0, got {lr}")
    return lr


class Optimizer(object):
    def __init__(self, params, lr):
        self.params = _pairs(params)
        self.lr = _check_lr(lr)

    def zero_grad(self):
        for _, g in self.params:
            g.zero_()

    def step(self):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy-ball or Nesterov), dampening and weight decay."""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.buffers = [None] * len(self.params)

    def step(self):
        # d = g + wd p;  b = mu b + (1 - dampening) d (b = d at the first step);  p -= lr (d + mu b if nesterov else b)
        for i, (p, g) in enumerate(self.params):
            d = g + self.weight_decay * p if self.weight_decay else g
            if self.momentum:
                b = self.buffers[i]
                if b is None:
                    b = self.buffers[i] = d.clone()
                else:
                    b.mul_(self.momentum).add_(d, alpha=1.0 - self.dampening)
                d = d + self.momentum * b if self.nesterov else b
            p.add_(d, alpha=-self.lr)

    def state_dict(self):
        return {"lr": self.lr, "momentum_buffers": [None if b is None else b.clone() for b in self.buffers]}

    def load_state_dict(self, state):
        self.lr = _check_lr(state["lr"])
        bufs = list(state.get("momentum_buffers", []))
        if len(bufs) != len(self.params):
            raise ValueError(f"optimizer state has {len(bufs)} buffers for {len(self.params)} parameters")
        self.buffers = [None if b is None else b.to(p.device, p.dtype).clone() for b, (p, _) in zip(bufs, self.params)]


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with PyTorch's bias correction, optional L2 weight decay and AMSGrad."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, lr)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self.weight_decay, self.amsgrad = float(weight_decay), bool(amsgrad)
        if not (0.0 <= self.betas[0] < 1.0 and 0.0 <= self.betas[1] < 1.0) or self.eps < 0 or self.weight_decay < 0:
            raise ValueError("Adam needs betas in [0, 1), eps >= 0 and weight_decay >= 0")
        self.reset()

    def reset(self):
        """Forget the moment estimates (e.g. after loading new weights)."""
        self.t = 0
        self.m = [p.new_zeros(p.shape) for p, _ in self.params]
        self.v = [p.new_zeros(p.shape) for p, _ in self.params]
        self.v_max = [p.new_zeros(p.shape) for p, _ in self.params] if self.amsgrad else []

    def step(self):
        # m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps)
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1 ** self.t, math.sqrt(1.0 - b2 ** self.t)
        for i, (p, g) in enumerate(self.params):
            if self.weight_decay:
                g = g + self.weight_decay * p
            m, v = self.m[i], self.v[i]
            m.lerp_(g, 1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            if self.amsgrad:
                v = self.v_max[i].copy_(self.v_max[i].maximum(v))
            denom = (v.sqrt() / c2).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / c1)

    def state_dict(self):
        return {"lr": self.lr, "t": self.t, "m": [m.clone() for m in self.m], "v": [v.clone() for v in self.v],
                "v_max": [v.clone() for v in self.v_max]}

    def load_state_dict(self, state):
        self.lr = _check_lr(state["lr"])
        m, v = list(state["m"]), list(state["v"])
        if len(m) != len(self.params) or len(v) != len(self.params):
            raise ValueError(f"optimizer state has {len(m)} moments for {len(self.params)} parameters")
        for (p, _), a, b in zip(self.params, m, v):
            if a.shape != p.shape or b.shape != p.shape:
                raise ValueError(f"optimizer moment {tuple(a.shape)} does not fit parameter {tuple(p.shape)}")
        self.t = int(state["t"])
        self.m = [a.to(p.device, p.dtype).clone() for a, (p, _) in zip(m, self.params)]
        self.v = [b.to(p.device, p.dtype).clone() for b, (p, _) in zip(v, self.params)]
        vmax = list(state.get("v_max") or [])
        self.v_max = ([a.to(p.device, p.dtype).clone() for a, (p, _) in zip(vmax, self.params)]
                      if self.amsgrad and len(vmax) == len(self.params) else
                      [p.new_zeros(p.shape) for p, _ in self.params] if self.amsgrad else [])
