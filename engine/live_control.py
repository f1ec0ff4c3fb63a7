"""The trainer's control plane (``LiveControl``, a part of ``Trainer``): what viewers ask (pause, resume, stop, a
live hyper-parameter) is recorded under a lock from any thread and applied by the loop between two steps, so a step
is never cut in half. The live hyper-parameters are the ones the Model declares (``Model.HYPERPARAMETERS``, checked
by the Model's own ``check_hyperparameter``) and torch's CPU thread count (``threads``: a count, or 0 for auto;
``engine.threads``). A learning rate set by hand rescales the rest of the schedule so that it continues from it."""
from __future__ import annotations

from .cadence import AUTO as EVAL_AUTO
from .cadence import AUTO_EVALS, MAX_EVAL_EVERY, eval_every_text, parse_eval_every
from .events import ControlEvent
from .states import RunState
from .threads import AUTO, MAX_THREADS, threads_text, threads_value

# the trainer's own live settings, beside the Model's: name -> (its value from text or the settings channel's number,
# its value in words); both take ``auto``, which the channel carries as a number
TRAINER_SETTINGS = {"threads": (threads_value, threads_text), "eval_every": (parse_eval_every, eval_every_text)}


class LiveControl:
    """Control calls and their application (a part of ``Trainer``: it uses the trainer's model, schedule, condition
    variable and event sinks)."""

    def pause(self) -> None:
        with self._cv:
            self._want_pause = True
            self._pause_message = ""
            self._cv.notify_all()

    def resume(self) -> None:
        with self._cv:
            self._want_pause = False
            self._cv.notify_all()

    def stop(self, reason: str = "") -> None:
        """End the run after the current step (also wakes a paused run); the full state is saved."""
        with self._cv:
            self._want_stop = True
            self._stop_message = self._stop_message or reason
            self._cv.notify_all()

    def set_lr(self, lr: float) -> None:
        """``set_hyperparameter("lr", lr)``."""
        self.set_hyperparameter("lr", lr)

    def hyperparameters(self) -> dict:
        """The live hyper-parameters the Model declares, with their current values and ranges:
        ``{name: {"value", "type", "min", "max", "min_open", "help"}}``."""
        spec, values = self.model.HYPERPARAMETERS, self.model.hyperparameters()
        out = {name: {"value": values.get(name), "type": kind.__name__, "min": low, "max": high, "min_open": open_low,
                      "help": text} for name, (kind, low, high, open_low, text) in spec.items()}
        out["threads"] = {"value": self.threads.setting, "type": "int", "min": 1, "max": MAX_THREADS,
                          "min_open": False, "auto": AUTO,
                          "help": "torch CPU threads, or auto: fits what the machine has free, adapting as it trains"}
        out["eval_every"] = {"value": self.evals.setting, "type": "int", "min": 0, "max": MAX_EVAL_EVERY,
                             "min_open": False, "auto": EVAL_AUTO,
                             "help": "steps between evaluations (0: epoch ends only), or auto: about "
                                     f"{AUTO_EVALS} per run and at least one a minute"}
        return out

    def set_hyperparameter(self, name: str, value, *, note: str = "") -> None:
        """Change one live hyper-parameter; checked now (ValueError names the problem), applied before the next step
        (while paused: at once). An event records it; ``note`` says who changed it when not a person (e.g. "PBT
        explore"), in the event's words."""
        own = TRAINER_SETTINGS.get(name)
        value = own[0](value) if own else self.model.check_hyperparameter(name, value)
        with self._cv:
            self._pending[name] = value
            self._notes[name] = note
            self._cv.notify_all()

    def _take_requests(self):
        with self._cv:
            pending, self._pending = self._pending, {}
            pending = {name: (value, self._notes.pop(name, "")) for name, value in pending.items()}
            queued, self._queued = self._queued, []
            return pending, queued, self._want_pause, self._want_stop

    def _apply(self, pending: dict, queued) -> None:
        current = self.model.hyperparameters()
        for name, (value, note) in pending.items():
            said = f" ({note})" if note else ""
            if name == "threads":
                if value != self.threads.setting:
                    self._emit(ControlEvent(self.run_id, action="set", detail=self.threads.set_setting(value) + said,
                                            step=self.step, value=float(value), name=name))
                continue
            if name == "eval_every":
                if value != self.evals.setting:
                    old, self.evals.setting = self.evals.setting, value
                    detail = f"eval_every {eval_every_text(old)} -> {eval_every_text(value)}{said}"
                    self._emit(ControlEvent(self.run_id, action="set", detail=detail, step=self.step,
                                            value=float(value), name=name))
                continue
            old = current.get(name, self.lr if name == "lr" else None)
            if value == old:
                continue
            if name == "lr":
                self.model.learning_rate = value
                self.lr = float(self.model.learning_rate)
                if self.schedule.varies:  # the rest of the schedule continues from the rate set by hand
                    factor = self.schedule.factor(self.step, self.total_steps, self.steps_per_epoch)
                    self.lr_scale = self.lr / (self.base_lr * factor) if factor > 0 else 1.0
                detail = f"{old:.3g} -> {self.lr:.3g}"
            else:
                self.model.set_hyperparameter(name, value)
                if name == "batch_size":
                    self.batch_size = int(value)
                    if self.dataset is not None and self.steps_per_epoch:
                        self.total_steps = self.step + self._remaining_steps()
                detail = f"{name} {old:g} -> {value:g}" if old is not None else f"{name} -> {value:g}"
            self._emit(ControlEvent(self.run_id, action="lr" if name == "lr" else "set", detail=detail + said,
                                    step=self.step, value=float(value), name=name))
        for ev in queued:
            self._emit(ev)

    def _between_steps(self) -> bool:
        """Apply control requests; blocks while paused. False: stop now."""
        pending, queued, pause, stop = self._take_requests()
        self._apply(pending, queued)
        if stop:
            return False
        if not pause:
            return True
        with self._cv:
            guard_message = self._pause_message
        if not guard_message:
            self._emit(ControlEvent(self.run_id, action="pause", step=self.step))
        self._set_state(RunState.PAUSED, guard_message)
        self._save_state()
        while True:
            with self._cv:
                while self._want_pause and not self._want_stop and not self._pending and not self._queued:
                    self._cv.wait(1.0)
            pending, queued, pause, stop = self._take_requests()
            self._apply(pending, queued)
            if stop:
                return False
            if not pause:
                break
        with self._cv:
            self._pause_message = ""
        self._emit(ControlEvent(self.run_id, action="resume", step=self.step))
        self._set_state(RunState.RUNNING)
        return True


def setting_text(name: str, value) -> str:
    """A live setting's value as a person reads it (from the settings channel's number)."""
    own = TRAINER_SETTINGS.get(name)
    return own[1](int(value)) if own else f"{value:g}"
