"""Threads that fit a shared machine (engine.threads): ``--threads N|auto`` and ``$N2N_THREADS`` on every command that
computes, the governor that adapts ``auto`` between steps, and ``threads`` as a live setting of a real runner."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.config import RunConfig
from engine.threads import AUTO, BACKOFF, CHECK_SECONDS, ThreadGovernor, cpus, parse_threads, pick, threads_value
from sessions import Store
from sessions.launch import spawn
from sessions.remote import RemoteRun
from sessions.store import settings_changes
from tui.screens.hyper import check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*argv, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "tui.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


# ------------------------------------------------------------------------------------------------ the setting
@pytest.mark.parametrize("text, n", [("auto", AUTO), ("AUTO", AUTO), (" 3 ", 3), ("0", AUTO), ("1", 1)])
def test_a_thread_setting_is_auto_or_a_count(text, n):
    assert parse_threads(text) == n


@pytest.mark.parametrize("text", ["", "-1", "1.5", "two", "0x", "2000", "true"])
def test_a_bad_thread_setting_says_what_is_allowed(text):
    with pytest.raises(ValueError, match="threads must be"):
        parse_threads(text)


def test_the_live_channel_carries_auto_as_zero():
    assert threads_value(0.0) == AUTO and threads_value(2.0) == 2 and threads_value("auto") == AUTO
    with pytest.raises(ValueError):
        threads_value(1.5)


def test_the_hyper_screen_takes_auto_for_threads():
    spec = {"value": 0, "type": "int", "min": 1, "max": 1024, "min_open": False, "auto": 0}
    assert check(spec, "auto") == 0 and check(spec, "3") == 3
    with pytest.raises(ValueError, match="or auto"):
        check(spec, "many")
    with pytest.raises(ValueError):
        check(spec, "0")  # a count starts at 1; 0 is how auto travels, not something to type


def test_omp_num_threads_caps_the_cpus_auto_starts_from(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpus() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpus() == len(os.sched_getaffinity(0))


def test_pick_leaves_the_cores_others_use():
    assert pick(8, None) == 8 and pick(8, 0.2) == 8 and pick(8, 3.0) == 5 and pick(2, 1.0) == 1 and pick(2, 5) == 1


def test_bad_threads_options_are_one_line_and_status_2(tmp_path):
    p = cli("--runs-dir", str(tmp_path / "runs"), "train", "--headless", "--threads", "0x")
    assert p.returncode == 2 and "--threads: threads must be a positive integer or auto" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli("eval", "--engine", "1", "--data", "sample", "--n-val", "4", env={"N2N_THREADS": "lots"})
    assert p.returncode == 2 and p.stderr.strip().endswith("$N2N_THREADS: threads must be a positive integer or "
                                                           "auto, got 'lots'"), p.stderr
    assert not (tmp_path / "runs").exists()


def test_eval_uses_the_threads_it_is_given():
    p = cli("eval", "--engine", "1", "--data", "sample", "--n-val", "8", "--threads", "1", "--json")
    assert p.returncode == 0, p.stderr
    code = ("import sys; sys.argv=['n2n-tui','eval','--engine','1','--data','sample','--n-val','8','--json'];"
            "import torch; from tui.cli import main; main(); print(torch.get_num_threads())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "N2N_THREADS": "1"}, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1] == "1", p.stdout + p.stderr


# -------------------------------------------------------------------------------- the governor, on a fake machine
class Machine:
    """A clock, a view of the other processes' cores, and the thread count torch was given."""

    def __init__(self, busy=0.0, cpus_=2):
        self.now, self.busy, self.cpus, self.set = 0.0, busy, cpus_, []

    def governor(self, setting=AUTO):
        return ThreadGovernor(setting, set_threads=self.set.append, clock=lambda: self.now,
                              watch=self, available=lambda: self.cpus)

    def sample(self):
        return self.busy

    def steps(self, gov, sec_per_img, seconds, every=0.1):
        """Train ``seconds`` of steps; each step's time per image from ``sec_per_img(threads in use)``."""
        said = []
        end = self.now + seconds
        while self.now < end:
            self.now += every
            msg = gov.after_step(sec_per_img(self.set[-1]))
            if msg:
                said.append(msg)
        return said


def test_a_fixed_count_is_used_as_given_and_never_probed():
    m = Machine(busy=1.5)
    gov = m.governor(3)
    assert gov.start() == "3 (as set)" and m.set == [3]
    assert m.steps(gov, lambda n: 0.01, 60) == [] and m.set == [3]


def test_auto_starts_from_the_free_cores():
    m = Machine(busy=1.0, cpus_=4)
    gov = m.governor()
    assert gov.start() == "auto: 3 of 4 CPUs, 1.0 core busy elsewhere" and gov.n == 3


def test_auto_on_a_quiet_machine_never_probes():
    m = Machine()
    gov = m.governor()
    gov.start()
    assert m.steps(gov, lambda n: 0.002, 120) == [] and m.set == [2]


def test_auto_takes_fewer_threads_when_the_machine_gets_busy_and_more_when_it_frees():
    m = Machine()
    gov = m.governor()
    gov.start()
    m.steps(gov, lambda n: 0.002 / n, 10)
    m.busy = 1.0  # someone starts a job: two threads now wait for a descheduled one
    said = m.steps(gov, lambda n: 0.02 if n == 2 else 0.004, 2 * CHECK_SECONDS)
    assert gov.n == 1 and said == ["2 -> 1: 50 -> 250 img/s, 1.0 core busy elsewhere"]
    m.busy = 0.0
    said = m.steps(gov, lambda n: 0.002 / n, 2 * CHECK_SECONDS)
    assert gov.n == 2 and said == ["1 -> 2: 500 -> 1000 img/s"]


def test_a_count_that_did_not_help_is_dropped_and_not_retried_at_once():
    m = Machine()
    gov = m.governor()
    gov.start()
    m.busy = 1.0  # the machine looks busy, but one thread is no faster here
    m.steps(gov, lambda n: 0.004, 2 * CHECK_SECONDS)
    assert gov.n == 2 and m.set[-1] == 2 and 1 in m.set  # tried, and went back
    tries = m.set.count(1)
    m.steps(gov, lambda n: 0.004, BACKOFF[0] - 2 * CHECK_SECONDS)
    assert m.set.count(1) == tries  # within the back-off: not again
    m.steps(gov, lambda n: 0.004, 3 * CHECK_SECONDS)
    assert m.set.count(1) == tries + 1 and m.set[-1] == 2  # after it: once more, and dropped again


def test_a_step_much_slower_at_the_same_count_tries_one_thread_less():
    m = Machine(cpus_=4)
    gov = m.governor()
    gov.start()
    m.steps(gov, lambda n: 0.001, 10)
    said = m.steps(gov, lambda n: 0.004 if n == 4 else 0.002, 2 * CHECK_SECONDS)  # busier, though it cannot see it
    assert gov.n == 3 and said and said[0].startswith("4 -> 3")


def test_a_setting_by_hand_replaces_auto_and_back():
    m = Machine(busy=1.0)
    gov = m.governor()
    gov.start()
    assert gov.set_setting(2) == "threads auto -> 2" and m.set[-1] == 2
    assert m.steps(gov, lambda n: 0.01, 30) == [] and m.set[-1] == 2
    assert gov.set_setting(AUTO) == "threads 2 -> auto (1, 1.0 core busy elsewhere)" and m.set[-1] == 1


# ------------------------------------------------------------------------------------- a real runner, a real load
def _status(runs, run_id):
    with Store(runs, create=False, readonly=True) as s:
        run_dir = s.run_dir(run_id)
    h = RemoteRun(run_dir)
    try:
        return h.call("status", timeout=30)
    finally:
        h.close()


def _wait(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live_run(tmp_path):
    runs = tmp_path / "runs"
    started = {}

    def start(**kw):
        cfg = RunConfig(engine=1, data="sample", noise="gaussian", epochs=2000, batch_size=32, subset=512, n_val=16,
                        eval_every=100000, device="cpu", **kw)
        started.update(spawn(runs, cfg))
        return runs, started["run"]

    yield start
    if started:
        try:
            os.kill(started["pid"], signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait(lambda: not _alive(started["pid"]), 10, "the runner to end")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctl_set_threads_reaches_torch_in_the_runner(live_run, tmp_path):
    runs, run_id = live_run(threads="2")
    _wait(lambda: _status(runs, run_id)["step"] > 2, 60, "the first steps")
    assert _status(runs, run_id)["threads"] == 2
    p = cli("--runs-dir", str(runs), "ctl", run_id, "set", "threads", "1")
    assert p.returncode == 0 and p.stdout.strip() == f"run {run_id}: threads 1 (from its next step)", p.stderr
    st = _wait(lambda: (s := _status(runs, run_id))["threads"] == 1 and s, 30, "torch at one thread")
    assert st["hyperparameters"]["threads"]["value"] == 1
    p = cli("--runs-dir", str(runs), "ctl", run_id, "set", "threads", "auto")
    assert p.returncode == 0 and "threads auto" in p.stdout
    st = _wait(lambda: (s := _status(runs, run_id))["hyperparameters"]["threads"]["value"] == 0 and s, 30, "auto")
    p = cli("--runs-dir", str(runs), "ctl", run_id, "set", "threads", "0.5")
    assert p.returncode == 2 and "threads must be a positive integer or auto" in p.stderr
    with Store(runs, create=False, readonly=True) as s:
        run = s.get_run(run_id)
    sets = [e["detail"] for e in run["events"] if e["kind"] == "set"]
    assert sets[0] == "threads 2 -> 1" and sets[1].startswith("threads 1 -> auto ("), sets
    assert [v for _, v in settings_changes(run["settings"])["threads"]] == [2, 1, 0]


@pytest.mark.skipif(cpus() < 2, reason="needs two CPUs: one for the run, one for the busy process")
def test_auto_gives_a_core_to_a_busy_process_and_takes_it_back_when_it_ends(live_run):
    runs, run_id = live_run()
    _wait(lambda: _status(runs, run_id)["step"] > 5, 60, "the first steps")
    n = cpus()
    _wait(lambda: _status(runs, run_id)["threads"] == n, 60, f"auto at {n} threads on a quiet machine")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        _wait(lambda: _status(runs, run_id)["threads"] < n and _status(runs, run_id)["busy_elsewhere"] >= 0.5, 90,
              "auto to leave the busy core")
    finally:
        busy.kill()
        busy.wait()

    def changes():
        with Store(runs, create=False, readonly=True) as s:
            return [e["detail"] for e in s.get_run(run_id)["events"] if e["kind"] == "threads"]

    # (torch's count alone could be a probe's; the event says the count was kept)
    _wait(lambda: changes()[-1].startswith(f"{n - 1} -> {n}: "), 120, "auto to take the core back")
    said = changes()
    assert said[0].startswith("auto: ")
    assert any(d.startswith(f"{n} -> {n - 1}: ") and "busy elsewhere" in d for d in said), said
    assert _status(runs, run_id)["threads"] == n
