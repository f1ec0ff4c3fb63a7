"""How often a run evaluates: ``auto`` (the default) gives a default-length run a PSNR curve that moves, at least
one point a minute while evaluations are cheap; 0 keeps epoch ends only; the setting is live."""
import pytest

from engine.cadence import AUTO, MIN_GAP_SECONDS, EvalCadence, eval_every_text, parse_eval_every
from engine.config import ConfigError, RunConfig


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_auto_spreads_about_twenty_evaluations_over_the_run():
    c = EvalCadence(AUTO, clock=Clock())
    assert [s for s in range(1, 601) if c.due(s, 600)] == list(range(30, 601, 30))
    assert EvalCadence(0).every(600) == 0 and EvalCadence(50).every(600) == 50


def test_auto_evaluates_at_least_once_a_minute_while_evaluations_are_cheap():
    clock = Clock()
    c = EvalCadence(AUTO, clock=clock)
    c.evaluated(0.5)
    clock.t = MIN_GAP_SECONDS + 1
    assert c.due(7, 100_000)           # a long run: the step count alone would wait 5 000 steps
    c.evaluated(30.0)                  # an evaluation that takes half the minute ...
    clock.t += MIN_GAP_SECONDS + 1
    assert not c.due(8, 100_000)       # ... is not repeated every minute
    assert not EvalCadence(0, clock=clock).due(10**6, 100)


@pytest.mark.parametrize("text, value", [("auto", AUTO), ("AUTO", AUTO), (-1, AUTO), (-1.0, AUTO), ("0", 0),
                                         (25, 25), (25.0, 25)])
def test_the_setting_parses(text, value):
    assert parse_eval_every(text) == value
    assert eval_every_text(value) == ("auto" if value == AUTO else str(value))


@pytest.mark.parametrize("bad", ["often", "-5", "-1", 2.5, "1e3", "true", True])
def test_a_bad_setting_is_one_line(bad):
    with pytest.raises(ValueError, match="eval_every must be auto, 0"):
        parse_eval_every(bad)
    with pytest.raises(ConfigError, match="^eval_every: must be auto"):
        RunConfig(eval_every=bad).validate()


def test_a_default_run_of_600_steps_records_at_least_ten_evaluations(tiny_models):
    from engine.data import load_data
    from engine.trainer import Trainer

    data = load_data("sample", noise="gaussian", seed=0, n_train=2400, n_val=16)
    counts = {}
    for every in ("auto", 0):
        t = Trainer(RunConfig(engine=1, epochs=1, batch_size=4, n_val=16, eval_every=every, threads=1,
                              device="cpu"), dataset=data)
        evals = []
        t.add_sink(lambda e, evals=evals: evals.append(e.step) if e.kind == "eval" else None)
        assert t.run() == "finished" and t.total_steps == 600
        counts[every] = evals
    assert counts["auto"] == list(range(0, 601, 30))  # the untrained start, then every 30 steps
    assert counts[0] == [0, 600]                      # the untrained start and the epoch end only


def test_the_cadence_is_live_and_kept_across_a_resume(tiny_models, poisson_data, tmp_path):
    from engine.trainer import Trainer

    config = RunConfig(engine=1, epochs=2, batch_size=4, n_val=64, eval_every=8, threads=1, device="cpu")
    t = Trainer(config, run_dir=tmp_path, dataset=poisson_data)
    steps = []
    t.add_sink(lambda e: steps.append(e.step) if e.kind == "eval" else None)
    t.add_sink(lambda e: t.set_hyperparameter("eval_every", 0) if e.kind == "step" and e.step == 17 else None)
    t.add_sink(lambda e: t.stop() if e.kind == "step" and e.step == 40 else None)
    with pytest.raises(ValueError, match="eval_every must be auto"):
        t.set_hyperparameter("eval_every", "sometimes")
    assert t.run() == "stopped"
    assert [s for s in steps if s] == [8, 16]  # none after it was set to epoch ends only (the first ends at 64)
    assert t.hyperparameters()["eval_every"]["value"] == 0
    resumed = Trainer(config, run_dir=tmp_path, dataset=poisson_data, resume_from=tmp_path)
    assert resumed.hyperparameters()["eval_every"]["value"] == 0
