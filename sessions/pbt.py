"""Population-based training for sweeps: Ray Tune's ``PopulationBasedTraining``, unchanged in what it decides, told
to say each exploit to the driver (which trial took whose weights, and the settings it explores) so the trial's run
records it. The spec's live settings (``SweepSpec.mutations``) are what it perturbs; a trial's full training state
(weights, optimizer, schedule position) travels in its Tune checkpoint."""
from __future__ import annotations


def mutations(spec) -> dict:
    """The spec's live settings as PBT's ``hyperparam_mutations``: a range stays a Tune sampler (redrawn, or scaled by
    0.8/1.2), a list of choices stays a list (redrawn, or a neighbour taken)."""
    from .ray_cluster import tune_space

    out = {}
    for k, (kind, args) in spec.mutations().items():
        out[k] = list(args) if kind in ("choice", "grid") else tune_space({k: (kind, args)})[k]
    return out


def pbt_scheduler(spec, on_exploit):
    """Tune's PBT for ``spec``; ``on_exploit(trial, donor, donor_config, new_config, result, donor_result)`` hears each
    exploit (from Tune's thread, before the trial restarts from the donor's checkpoint): ``result`` is the trial's
    result that PBT judged, ``donor_result`` the donor's at the checkpoint it hands over."""
    from ray.tune.schedulers import PopulationBasedTraining

    class Scheduler(PopulationBasedTraining):
        def _exploit(self, tune_controller, trial, trial_to_clone):
            old = dict(trial_to_clone.config)  # PBT explores from the donor's settings
            result = dict(self._trial_state[trial].last_result or {})
            donor_result = dict(self._trial_state[trial_to_clone].last_result or {})
            super()._exploit(tune_controller, trial, trial_to_clone)
            if self.on_exploit is not None:
                try:
                    self.on_exploit(trial, trial_to_clone, old, dict(trial.config), result, donor_result)
                except Exception:  # the record must never break the search
                    pass

        def __getstate__(self):  # Tune pickles its scheduler into the experiment: the driver stays in memory
            return {**self.__dict__, "on_exploit": None}

    by_steps = spec.perturbation_steps is not None
    scheduler = Scheduler(time_attr="step" if by_steps else "training_iteration",
                     perturbation_interval=spec.perturbation_steps if by_steps else spec.perturbation_interval,
                     hyperparam_mutations=mutations(spec), quantile_fraction=spec.quantile,
                     resample_probability=spec.resample_probability, log_config=False)
    scheduler.on_exploit = on_exploit
    return scheduler
