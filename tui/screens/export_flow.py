"""``s`` on the dashboard (``ExportFlow``, a part of ``DashboardScreen``): the run's verified export of its best
weights to the grader's place (or ``--export-to``), done by the run's own process; when the target already holds
better weights the user is asked before they are replaced."""
from __future__ import annotations

from pathlib import Path

from textual import work

from engine.errors import first_line
from engine.models import export_target

from .confirm import ConfirmScreen


class ExportFlow:
    """Uses the screen's ``trainer`` (a run handle), ``engine``, ``export_to``, ``log_event`` and ``record``."""

    def action_save(self) -> None:
        if self.trainer.best_psnr is None:
            self.notify("nothing to save yet: no evaluation has run", severity="warning")
            return
        target = export_target(self.engine, self.export_to)
        self.log_event(f"exporting best weights to {target}…")
        self._check_and_export(target)

    @work(thread=True, exclusive=True, group="export")
    def _check_and_export(self, target: Path, force: bool = False) -> None:
        """The verified export (done by the run's own process); it refuses to replace better weights, and then we
        ask."""
        from sessions.export import BetterTargetError

        try:
            result = self.trainer.export(target, force=force)
        except BetterTargetError as e:
            question = (f"{target} already scores {e.theirs:.2f} dB, better than this run's best {e.ours:.2f} dB "
                        f"on the same validation images. Replace it?")
            self.app.call_from_thread(self.app.push_screen, ConfirmScreen(question),
                                      lambda yes: self._check_and_export(target, True) if yes
                                      else self._export_cancelled(target))
            return
        except Exception as e:
            msg = first_line(e)
            self.app.call_from_thread(self._export_done, None, f"export failed: {msg}")
            return
        self.app.call_from_thread(self._export_done, result, None)

    def _export_cancelled(self, target: Path) -> None:
        self.log_event(f"export cancelled: {target} kept")
        self.record("export-cancelled", f"{target} kept (better PSNR)")

    def _export_done(self, result: dict | None, error: str | None) -> None:
        if error:
            self.log_event(error)
            self.notify(error, severity="error")
            self.record("export-failed", error)
            return
        psnr = result.get("psnr")
        text = f"saved {result['path']}" + (f" ({psnr:.2f} dB, verified)" if psnr is not None else " (verified)")
        self.log_event(text)
        self.notify(text)  # export_run itself records the "export" event in the store
