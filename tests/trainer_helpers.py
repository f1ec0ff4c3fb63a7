"""What the in-process trainer tests share: a small run's config and a sink that keeps every event (the polling
wait is ``waiting.wait_until``)."""
from __future__ import annotations

from engine.config import RunConfig


def cfg(**kw) -> RunConfig:
    base = dict(engine=1, noise="poisson", epochs=1, batch_size=8, lr=3e-3, n_val=64, eval_every=0, device="cpu")
    base.update(kw)
    return RunConfig(**base)


class Log(list):
    """A sink that keeps every event."""

    def __call__(self, ev):
        self.append(ev)

    def of(self, kind):
        return [e for e in self if e.kind == kind]
