"""``ZoomScreen``: the validation samples at full resolution, any sample of any evaluation of the run.

It is handed what it shows: the sessions store and the run id (every evaluation's patches, through
``store.samples``) and the patches the dashboard is showing now (the latest evaluation, which the store may not have
written yet). ``left`` / ``right`` step through the samples, ``up`` / ``down`` through the evaluations (older /
newer), ``home`` / ``end`` jump to the first / last evaluation.
"""
from __future__ import annotations

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label

from engine.patches import as_array

from ..widgets import ZoomView

LATEST = "latest"  # an evaluation known only from the dashboard, not (yet) from the store


def psnr(image: np.ndarray, clean: np.ndarray) -> float:
    """The course's PSNR of one uint8 image (``engine.metrics.psnr_per_image``), in numpy: viewers import no torch."""
    mse = np.mean(((image.astype(np.float32) - clean.astype(np.float32)) / 255.0) ** 2)
    return float(-10.0 * np.log10(mse + 1e-8))


class ZoomScreen(Screen):
    BINDINGS = [
        Binding("left", "sample(-1)", "Prev sample", key_display="←"),
        Binding("right", "sample(1)", "Next sample", key_display="→"),
        Binding("up", "evaluation(-1)", "Older eval", key_display="↑"),
        Binding("down", "evaluation(1)", "Newer eval", key_display="↓"),
        Binding("home", "evaluation(-1000000)", "First", show=False),
        Binding("end", "evaluation(1000000)", "Last", show=False),
        Binding("pageup", "scroll(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll(1)", "Scroll down", show=False),
        Binding("escape,z,q", "back", "Back"),
    ]

    def __init__(self, store, run_id: str, latest: tuple | None = None) -> None:
        """``latest``: (noisy, denoised, clean) uint8 (K, 3, H, W) tensors of the dashboard's latest evaluation."""
        super().__init__()
        self.store = store
        self.run_id = run_id
        self.latest = latest
        self.steps: list = []      # evaluations: stored steps, then LATEST if the store does not have it yet
        self.evaluation = 0        # index into steps
        self.sample = 0
        self._patches: dict = {}   # step -> (noisy, denoised, clean)

    def compose(self) -> ComposeResult:
        yield Label("", id="zoom-title")
        with VerticalScroll(id="zoom-scroll", can_focus=False):
            yield ZoomView(id="zoom-view")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.evaluation = len(self.steps) - 1
        self.show()

    # ------------------------------------------------------------------------------------------------ data
    def reload(self) -> None:
        """The evaluations available now (a live run keeps adding them)."""
        try:
            stored = list(self.store.samples(self.run_id)["steps"])
        except Exception:  # a store without patches (older runs, stand-ins): only what the dashboard has
            stored = []
        steps = stored
        if self.latest is not None and not (stored and self._same(self._load(stored[-1]), self.latest)):
            steps = stored + [LATEST]
        self.steps = steps

    @staticmethod
    def _same(a, b) -> bool:
        return a is not None and all(x.shape == y.shape and bool((x == y).all()) for x, y in zip(a, b))

    def _load(self, step):
        if step == LATEST:
            return self.latest
        if step not in self._patches:
            try:
                s = self.store.samples(self.run_id, step)
                self._patches[step] = (s["noisy"], s["denoised"], s["clean"])
            except Exception as e:
                self.notify(f"could not read the patches of step {step}: {e}", severity="error")
                return None
        return self._patches[step]

    # ------------------------------------------------------------------------------------------------ view
    def show(self) -> None:
        title = self.query_one("#zoom-title", Label)
        view = self.query_one(ZoomView)
        if not self.steps:
            title.update(f"run {self.run_id}: no samples yet (they appear after the first evaluation)")
            return
        step = self.steps[self.evaluation]
        patches = self._load(step)
        if patches is None:
            return
        noisy, denoised, clean = patches
        self.sample %= len(clean)
        i = self.sample
        noisy, denoised, clean = (as_array(t[i]) for t in (noisy, denoised, clean))
        view.show_sample(noisy, denoised, clean)
        p_noisy, p_den = psnr(noisy, clean), psnr(denoised, clean)
        where = "latest evaluation" if step == LATEST else f"step {step}"
        title.update(f"run {self.run_id} · {where} (evaluation {self.evaluation + 1}/{len(self.steps)}) · "
                     f"sample {i + 1}/{len(clean)} · noisy {p_noisy:.2f} dB → denoised {p_den:.2f} dB")

    def action_sample(self, delta: int) -> None:
        self.sample += delta
        self.show()

    def action_evaluation(self, delta: int) -> None:
        at = self.steps[self.evaluation] if self.steps else None
        self.reload()
        if not self.steps:
            return
        index = self.steps.index(at) if at in self.steps else len(self.steps) - 1
        self.evaluation = max(0, min(len(self.steps) - 1, index + delta))
        self.show()

    def action_scroll(self, direction: int) -> None:
        scroll = self.query_one("#zoom-scroll", VerticalScroll)
        scroll.scroll_page_down() if direction > 0 else scroll.scroll_page_up()

    def action_back(self) -> None:
        self.app.pop_screen()
