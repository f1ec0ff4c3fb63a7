"""Sweeps on Ray Tune, for real: a local Ray (embedded, as ``n2n-tui sweep`` starts it), a two-node cluster simulated
on this machine (``ray.cluster_utils.Cluster``), ASHA stopping a bad trial, every trial an ordinary run in the store,
specs checked before Ray starts, Ctrl-C leaving no Ray process behind, and a resumed sweep not redoing finished
trials. Trials train a tiny network (widths 8, 16) on 64 pairs."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sessions import Store
from sessions.sweep_spec import SpecError, check_spec

ray = pytest.importorskip("ray", reason="Ray Tune is an optional extra (pip install 'n2n-tui[sweep]')")

TINY = """
engine = 1
data = "sample"
noise = "poisson"
epochs = {epochs}
subset = 64
batch_size = 8
n_val = 32
eval_every = 4
device = "cpu"
model = {{ widths = [8, 16] }}
trials = {trials}
concurrency = {concurrency}
scheduler = "{scheduler}"
{extra}
[space]
{space}
"""


def spec_file(tmp_path, epochs=4, trials=3, concurrency=1, scheduler="asha", extra="",
              space='lr = { grid = [0.003, 0.002, 1.0] }'):
    p = tmp_path / "sweep.toml"
    p.write_text(TINY.format(epochs=epochs, trials=trials, concurrency=concurrency, scheduler=scheduler,
                             extra=extra, space=space))
    return p


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("N2N_RUNS_DIR", None)
    e.pop("RAY_ADDRESS", None)
    return e


def ray_processes(session: str | None = None) -> set[int]:
    """Ray's processes (of one session, when given: other Ray users of this machine are not ours to count)."""
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server|ray::|default_worker.py"], capture_output=True, text=True)
    pids = {int(p) for p in out.stdout.split()}
    if session is None:
        return pids
    mine = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if os.path.basename(session).encode() in f.read():
                    mine.add(pid)
        except OSError:
            pass
    return mine


@pytest.mark.parametrize("body, needle", [
    ({"epochs": 1, "space": {}}, "space: expected a table"),
    ({"space": {"lr": {"loguniform": [1e-2, 1e-4]}}}, "space.lr.loguniform: empty range"),
    ({"space": {"lr": {"loguniform": [-1, 1e-4]}}}, "space.lr.loguniform: the range must be positive"),
    ({"space": {"lr": {"uniform": [-1e-2, 1e-2]}}}, "space.lr: must be a positive number"),
    ({"space": {"lr": {"uniform": [0.1, "x"]}}}, "space.lr.uniform: expected [low, high] numbers"),
    ({"space": {"lr": {"gaussian": [0, 1]}}}, "space.lr: unknown sampler 'gaussian'"),
    ({"space": {"batch_size": {"choice": [16, -4]}}}, "space.batch_size: must be a positive integer"),
    ({"space": {"batch_size": {"randint": [8, 8]}}}, "space.batch_size.randint: empty range"),
    ({"space": {"widths": {"choice": [[8, 16], "wide"]}}}, "space.widths:"),
    ({"space": {"depth": {"choice": [1, 2]}}}, "space.depth: not a searchable setting"),
    ({"learning_rate": 0.1, "space": {"lr": {"choice": [1e-3]}}}, "learning_rate: unknown key"),
    ({"trials": 0, "space": {"lr": {"choice": [1e-3]}}}, "trials: must be between 1"),
    ({"concurrency": "2", "space": {"lr": {"choice": [1e-3]}}}, "concurrency: expected an integer"),
    ({"gpus_per_trial": -0.5, "space": {"lr": {"choice": [1e-3]}}}, "gpus_per_trial: must be at least 0"),
    ({"scheduler": "hyperband", "space": {"lr": {"choice": [1e-3]}}}, "scheduler: must be one of asha, pbt, none"),
    ({"epochs": 0, "space": {"lr": {"choice": [1e-3]}}}, "epochs: must be a positive integer"),
    ({"lr": 1e-3, "space": {"lr": {"choice": [1e-3]}}}, "space.lr: also fixed at the top level"),
    ({"storage": "/dev/null", "space": {"lr": {"choice": [1e-3]}}}, "storage: /dev/null is a kernel interface"),
    ({"storage": "/etc/hostname", "space": {"lr": {"choice": [1e-3]}}},
     "storage: /etc/hostname exists and is not a folder"),
    # model options are checked without building a model: a zero width, a width of 10**8
    ({"space": {"widths": {"choice": [[0, 48, 64]]}}}, "space.widths: widths must be 1 to 8 integers from 1 to 4096"),
    ({"engine": 2, "space": {"c1": {"choice": [100000000]}}},
     "space.c1: Model option c1 must be an integer from 1 to 4096, got 100000000"),
])
def test_bad_specs_name_the_key(body, needle):
    with pytest.raises(SpecError) as e:
        check_spec(body)
    assert needle in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_a_bad_spec_exits_2_before_ray_starts(tmp_path):
    bad = spec_file(tmp_path, space='lr = { loguniform = [1e-2, 1e-4] }')
    def heads() -> set[int]:  # a Ray session starts with its GCS server
        out = subprocess.run(["pgrep", "-f", "gcs_server"], capture_output=True, text=True)
        return {int(x) for x in out.stdout.split()}

    before = heads()
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(bad), "--headless", "--runs-dir",
                        str(tmp_path / "runs")], capture_output=True, text=True, timeout=60, env=env())
    assert p.returncode == 2 and p.stderr.strip().endswith("(low must be below high)"), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and heads() <= before
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(tmp_path / "missing.toml"), "--headless"],
                       capture_output=True, text=True, timeout=60, env=env())
    assert p.returncode == 2 and "no such sweep spec" in p.stderr


def test_a_local_sweep_records_each_trial_and_asha_stops_the_bad_one(tmp_path):
    runs = tmp_path / "runs"
    trial_dirs = set(Path(tempfile.gettempdir()).glob("n2n-trial-*"))
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(spec_file(tmp_path)), "--json",
                        "--runs-dir", str(runs)], capture_output=True, text=True, timeout=600, env=env())
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Token authentication" not in p.stderr  # Ray's start-up notice goes to the sweep's log, not the terminal
    # each trial's working folder went to Tune as checkpoints and is gone (they once piled up, ~6 MB a trial)
    assert set(Path(tempfile.gettempdir()).glob("n2n-trial-*")) <= trial_dirs
    events = [json.loads(line) for line in p.stdout.splitlines()]
    sweep_id = events[0]["sweep"]
    starts = [e for e in events if e["event"] == "trial_start"]
    ends = {e["trial"]: e for e in events if e["event"] == "trial_end"}
    assert len(starts) == 3 and len(ends) == 3 and all(e["sweep"] == sweep_id for e in events)
    with Store(runs) as s:
        rows = {r["id"]: r for r in s.list_runs()}
        sweeps = s.list_sweeps()
    assert [sw["id"] for sw in sweeps] == [sweep_id] and sweeps[0]["state"] == "finished"
    by_lr = {}
    for e in starts:
        r = rows[e["run"]]
        assert r["config"]["sweep"] == sweep_id and r["config"]["trial"] == e["trial"]
        assert r["config"]["lr"] == e["params"]["lr"] in (0.003, 0.002, 1.0)  # the sampled value is the run's
        by_lr[e["params"]["lr"]] = (r, ends[e["trial"]])
    bad_run, bad_end = by_lr[1.0]
    assert bad_end["early_stopped"] and bad_run["state"] == "stopped" and bad_run["step"] < bad_run["total_steps"]
    good_run, good_end = by_lr[0.003]
    assert good_run["state"] == "finished" and good_run["step"] == good_run["total_steps"] == 32
    assert (runs / good_run["id"] / "best.pth").is_file()  # best weights travelled back from the trial
    # a trial's run folder is as private as any run's, and so is the folder of Tune's checkpoints
    for f in [runs / good_run["id"], *(runs / good_run["id"]).iterdir()]:
        assert stat.S_IMODE(f.lstat().st_mode) == (0o700 if f.is_dir() else 0o600), f
    assert stat.S_IMODE((runs / "sweeps").stat().st_mode) == 0o700
    best = events[-1]["best"]
    assert events[-1]["event"] == "sweep_end" and best["run"] == sweeps[0]["best_run"]
    with Store(runs) as s:
        good = s.get_run(good_run["id"])
    assert [m["step"] for m in good["metrics"] if m["loss"] is not None] == list(range(1, 33))  # every step recorded
    # threads auto within a trial: the CPUs Tune reserved for it (cpus_per_trial = 1), not the whole machine
    threads = [e["detail"] for e in good["events"] if e["kind"] == "threads"]
    assert len(threads) == 1 and threads[0].startswith("auto: 1 of 1 CPUs"), threads  # ", 1.5 cores busy elsewhere"
    from tui.cli import main

    assert main(["export", good_run["id"], "--to", str(tmp_path / "best.pth"), "--runs-dir", str(runs)]) == 0
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweeps", "--json", "--runs-dir", str(runs)],
                       capture_output=True, text=True, env=env())
    assert json.loads(p.stdout)[0]["id"] == sweep_id


def test_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    from ray.cluster_utils import Cluster

    from sessions.ray_cluster import connect_ray
    from sessions.sweep import SweepDriver
    from sessions.sweep_spec import load_spec

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        connect_ray(cluster.address)
        spec = load_spec(spec_file(tmp_path, epochs=2, trials=2, concurrency=2, scheduler="none",
                                   space='lr = { grid = [0.003, 0.002] }'))
        with Store(tmp_path / "runs") as store:
            driver = SweepDriver(store, spec)
            summary = driver.run()
            rows = {r["id"]: r for r in store.list_runs()}
        nodes = {t.node for t in driver.trials.values()}
        assert summary["state"] == "finished" and len(driver.trials) == 2
        assert len(nodes) == 2, nodes  # one trial on each node
        for t in driver.trials.values():
            assert rows[t.run]["state"] == "finished" and rows[t.run]["config"]["sweep"] == driver.sweep_id
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_ctrl_c_leaves_no_ray_process_and_the_sweep_resumes(tmp_path):
    runs = tmp_path / "runs"
    spec = spec_file(tmp_path, epochs=12, trials=3, scheduler="none", space='lr = { grid = [0.003, 0.002, 0.001] }')
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "sweep", str(spec), "--json", "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    lines = []
    try:
        for raw in proc.stdout:  # wait for the first trial to end and the second to start
            lines.append(json.loads(raw))
            if sum(d["event"] == "trial_start" for d in lines) == 2:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        lines += [json.loads(x) for x in rest.splitlines()]
    finally:
        proc.kill()
    assert proc.returncode == 130  # Ctrl-C, as train says it
    time.sleep(2)
    session = lines[0]["ray_session"]
    assert session and not ray_processes(session), ray_processes(session)  # the sweep's Ray went with it
    sweep_id = lines[0]["sweep"]
    first = next(d for d in lines if d["event"] == "trial_end")
    assert first["state"] == "finished"
    with Store(runs) as s:
        assert s.get_sweep(sweep_id)["state"] in ("stopped", "crashed")
        # what the sweep said of each trial's best is what its run folder holds, the interrupted one's included
        for end in (d for d in lines if d["event"] == "trial_end"):
            assert s.get_run(end["run"], metrics=False, events=False)["best_psnr"] == end["best_psnr"], end
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", "--resume", sweep_id, "--json", "--runs-dir",
                        str(runs)], capture_output=True, text=True, timeout=600, env=env())
    assert p.returncode == 0, p.stderr[-2000:]
    again = [json.loads(x) for x in p.stdout.splitlines()]
    restarted = {d["trial"] for d in again if d["event"] == "trial_start"}
    assert first["trial"] not in restarted and len(restarted) == 2  # the finished trial is not done again
    with Store(runs) as s:
        runs_of_sweep = [r for r in s.list_runs() if r["config"].get("sweep") == sweep_id]
        assert len(runs_of_sweep) == 3 and all(r["state"] == "finished" for r in runs_of_sweep)
        assert s.get_sweep(sweep_id)["state"] == "finished"


def test_the_sweep_view_ranks_trials_and_its_keys_reach_the_driver(tmp_path, monkeypatch):
    """The view on a driver whose trials are already recorded (no Ray): ranking, the leader's curves, x, S, open."""
    import asyncio

    from fakes import train_args
    from waiting import wait_for

    from engine.config import RunConfig
    from sessions.sweep import SweepDriver, TrialView
    from sessions.sweep_spec import check_spec
    from tui.app import N2NApp
    from tui.screens import DashboardScreen
    from tui.screens import sweep as sweep_screen
    from tui.screens.sweep import SweepScreen
    from tui.widgets import EventLog, PsnrPlot, TrialsTable
    from tui.widgets.trials_table import COLUMNS as TRIAL_COLUMNS

    spec = check_spec({"engine": 1, "epochs": 1, "space": {"lr": {"choice": [1e-3, 2e-3, 3e-3]}}})
    store = Store(tmp_path / "runs")
    driver = SweepDriver(store, spec)
    for i, (lr, best, state) in enumerate([(1e-3, 21.0, "finished"), (2e-3, 23.5, "running"), (3e-3, 19.0, "stopped")]):
        cfg = RunConfig(lr=lr, sweep=driver.sweep_id, trial=f"t{i}")
        run = store.new_run(cfg)
        view = TrialView(f"t{i}", run, {"lr": lr}, state=state, step=10, total_steps=20, psnr=best, best_psnr=best,
                         best_step=10,
                         early_stopped=state == "stopped", history=[(0, 18.0), (10, best)])
        driver.trials[view.trial] = view
        from sessions import Recorder

        driver.recorders[view.trial] = Recorder(store, run)
    store.set_tag(driver.trials["t1"].run, "wide lr")

    def footer(screen) -> dict:
        from textual.widgets._footer import FooterKey

        return {k.key: k.description for k in screen.query(FooterKey)}

    from sessions import ray_cluster

    monkeypatch.setattr(ray_cluster, "NOTES", ["Token authentication is enabled for this Ray cluster."])

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=store, sweep=driver, start=False)
        async with app.run_test(size=(110, 32)) as pilot:
            screen = app.screen
            assert isinstance(screen, SweepScreen)
            screen.events.put({"event": "trial_result", "trial": "t1"})
            assert await wait_for(pilot, lambda: screen.query_one(TrialsTable).row_count == 3)
            assert "Ray: Token authentication is enabled for this Ray cluster." in screen.query_one(EventLog).entries
            table = screen.query_one(TrialsTable)
            assert table.order == ["t1", "t0", "t2"]  # best PSNR first
            tag = TRIAL_COLUMNS.index("tag")  # each trial's run's tag, as in runs; set from a shell, it shows up
            assert str(table.get_row("t1")[tag]) == "wide lr" and str(table.get_row("t0")[tag]) == ""
            monkeypatch.setattr(sweep_screen, "TAGS_EVERY", 0.0)
            store.set_tag(driver.trials["t0"].run, "baseline")
            assert await wait_for(pilot, lambda: str(table.get_row("t0")[tag]) == "baseline")
            assert "leader" in str(table.get_row("t1")[-1]) and "early-stopped" in str(table.get_row("t2")[-1])
            table.move_cursor(row=1)  # t0: its curve against the leader's
            assert await wait_for(pilot, lambda: screen.query_one(PsnrPlot).n_points == 4)
            table.move_cursor(row=0)
            await pilot.press("x")
            assert driver.trial_stop_asked("t1")
            await pilot.press("S")  # not running (start=False): nothing to stop
            assert not driver.sweep_stop_asked()
            await pilot.press("o")
            assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
            assert app.screen.run_id == driver.trials["t1"].run
            await pilot.press("space")  # a trial takes no pause: said, not done
            # the trial's footer offers the way back, not a quit; esc and q both take it, asking nothing
            assert await wait_for(pilot, lambda: footer(app.screen).get("q") == "Back")
            assert "Quit" not in footer(app.screen).values()
            await pilot.press("escape")
            assert await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen))
            assert not driver.sweep_stop_asked() and driver.trials["t1"].state == "running"  # the sweep goes on
            await pilot.press("o")
            assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
            await pilot.press("q")
            assert await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen))
            with Store(tmp_path / "runs") as s:
                left = [e for e in s.get_run(driver.trials["t1"].run)["events"] if e["kind"] == "detach"]
            assert len(left) == 2  # each visit's leaving is recorded, as a detach from any run
            await pilot.press("q")
        assert app.return_code == 0
    asyncio.run(go())
    store.close()


def test_the_sweep_winner_is_a_trial_whose_training_improved_on_its_start():
    from sessions.sweep import SweepDriver, TrialView

    class Driver:
        best = SweepDriver.best

    d = Driver()
    untrained = TrialView("a", "ra", {}, best_psnr=20.98, best_step=0, noisy_psnr=20.98)   # never beat step 0
    broken = TrialView("b", "rb", {}, best_psnr=5.39, best_step=8, noisy_psnr=20.98)       # worse than the input
    d.trials = {"a": untrained, "b": broken}
    assert d.best() is None
    good = TrialView("c", "rc", {}, best_psnr=21.5, best_step=8, noisy_psnr=20.98)
    d.trials["c"] = good
    assert d.best() is good


def test_resources_that_can_never_be_met_and_bad_addresses_are_one_line_before_ray_starts(tmp_path):
    import torch

    def heads() -> set[int]:
        out = subprocess.run(["pgrep", "-f", "gcs_server"], capture_output=True, text=True)
        return {int(x) for x in out.stdout.split()}

    before = heads()
    gpus = torch.cuda.device_count() + 1
    spec = spec_file(tmp_path, extra=f"gpus_per_trial = {gpus}")
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(spec), "--headless", "--runs-dir",
                        str(tmp_path / "runs")], capture_output=True, text=True, timeout=60, env=env())
    err = p.stderr.strip()
    assert p.returncode == 2 and len(err.splitlines()) == 1, err
    assert f"gpus_per_trial = {gpus}: this machine has {gpus - 1} GPU" in err and "no trial could ever start" in err
    assert heads() <= before
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(spec_file(tmp_path)), "--headless",
                        "--address", "garbage", "--runs-dir", str(tmp_path / "runs")], capture_output=True,
                       text=True, timeout=60, env=env())
    assert p.returncode == 2 and p.stderr.strip().endswith("expected HOST:PORT (e.g. 10.0.0.5:6379), auto, local or "
                                                          "ray://HOST:PORT"), p.stderr


def test_embedded_ray_is_a_cluster_of_its_own_and_its_notices_stay_off_the_terminal(monkeypatch, capfd):
    """``ray.init()`` without an address joins the cluster /tmp/ray/ray_current_cluster names (on a shared machine,
    anyone's): the sweep asks for a local one. What Ray says as it starts (2.59: token authentication is on) is
    kept for the sweep's log instead of being printed under the view."""
    import logging

    from sessions import ray_cluster

    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        logging.getLogger(ray_cluster.NOTICE_LOGGERS[0]).warning("Token authentication is enabled for this Ray "
                                                                 "cluster. Set RAY_AUTH_MODE=disabled to opt out.")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray_cluster, "NOTES", [])
    ray_cluster.connect_ray(None, num_cpus=2)
    assert calls[0]["address"] == "local" and calls[0]["num_cpus"] == 2
    assert ray_cluster.NOTES[0].startswith("Token authentication is enabled")
    out, err = capfd.readouterr()
    assert "Token" not in out + err and os.environ.get("RAY_AUTH_MODE") != "disabled"  # quiet, and still on
