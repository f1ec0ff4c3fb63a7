"""Population-based training and steering a sweep's trials, for real: Ray Tune's PBT on the local machine (an exploit
happens and its lineage is recorded on the trial's run), and a simulated two-node cluster where a trial on the
second node is steered by ``ctl set`` from this machine (the change reaches the trial's optimizer; its event reaches
the store). Trials train a tiny network on 64 pairs, four at a time, half a CPU each."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time

import pytest
from test_sweep import env, spec_file

from sessions import Store
from sessions.store import settings_changes
from sessions.sweep_spec import SpecError, check_spec

ray = pytest.importorskip("ray", reason="Ray Tune is an optional extra (pip install 'n2n-tui[sweep]')")

# quantile 0.5: at each perturbation the bottom two of four take the top two's weights, so an exploit always happens
PBT = 'cpus_per_trial = 0.5\nperturbation_interval = 2\nquantile = 0.5\n'
SPACE = 'lr = { loguniform = [0.0003, 0.03] }'


def test_pbt_spec_keys_are_checked_before_ray_starts():
    base = {"engine": 1, "epochs": 1, "trials": 4, "scheduler": "pbt", "space": {"lr": {"loguniform": [1e-4, 1e-2]}}}
    spec = check_spec(base)
    assert spec.mutations() == {"lr": ("loguniform", [1e-4, 1e-2])}
    assert spec.concurrency == 4  # the population trains at once unless the spec says otherwise
    assert check_spec({**base, "concurrency": 2}).concurrency == 2
    for change, needle in [
        ({"space": {"loss": {"choice": ["l1", "l2"]}}}, "scheduler: pbt changes live settings"),
        ({"trials": 1}, "trials: pbt needs a population of at least 2"),
        ({"quantile": 0.9}, "quantile: must be between 0.01 and 0.5"),
        ({"perturbation_interval": 0}, "perturbation_interval: must be between 1"),
        ({"perturbation_interval": 2, "perturbation_steps": 100}, "perturbation_steps: give perturbation_interval"),
        ({"metric": "best_psnr"}, "metric: pbt compares trials on their latest PSNR"),
        ({"eval_every": 0}, "eval_every: pbt judges trials at evaluations"),
        ({"scheduler": "asha", "quantile": 0.3}, "quantile: a setting of scheduler = \"pbt\""),
    ]:
        with pytest.raises(SpecError, match=needle.replace("(", r"\(")):
            check_spec({**base, **change})


def test_a_local_pbt_sweep_exploits_and_records_the_lineage(tmp_path):
    runs = tmp_path / "runs"
    spec = spec_file(tmp_path, epochs=4, trials=4, concurrency=4, scheduler="pbt", extra=PBT, space=SPACE)
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(spec), "--json", "--runs-dir", str(runs)],
                       capture_output=True, text=True, timeout=600, env=env())
    assert p.returncode == 0, p.stderr[-3000:]
    events = [json.loads(line) for line in p.stdout.splitlines()]
    exploits = [e for e in events if e["event"] == "exploit"]
    assert exploits, [e["event"] for e in events]
    runs_of = {e["trial"]: e["run"] for e in events if e["event"] == "trial_start"}
    assert len(runs_of) == 4 and all(e["state"] == "finished" for e in events if e["event"] == "trial_end")
    with Store(runs) as s:
        for x in exploits:
            assert x["from_run"] == runs_of[x["from_trial"]] and x["from_trial"] != x["trial"]
            run = s.get_run(x["run"])
            took = [e for e in run["events"] if e["kind"] == "exploit"]
            # the run says whose weights it took, from which step, and what it explores
            assert any(f"trial {x['from_trial']} (run {x['from_run']}, step {x['from_step']}" in e["detail"]
                       for e in took), took
            for name, (_, new) in x["changes"].items():  # the explored value: applied by the trial, recorded
                assert any(r["name"] == name and r["value"] == pytest.approx(new) for r in s.settings(x["run"]))
                assert any("(PBT explore)" in e["detail"] for e in run["events"] if e["kind"] == name)
                # its settings history starts at the launch values, so report draws the change on the curves
                assert name in settings_changes(s.settings(x["run"])), s.settings(x["run"])
    x = exploits[0]
    shown = subprocess.run([sys.executable, "-m", "tui.cli", "show", x["run"], "--runs-dir", str(runs)],
                           capture_output=True, text=True, env=env())
    assert shown.returncode == 0 and f"took the weights of trial {x['from_trial']}" in shown.stdout, shown.stdout


def test_a_trial_on_a_second_node_is_steered_by_ctl_from_the_drivers_machine(tmp_path):
    from ray.cluster_utils import Cluster

    from sessions.ray_cluster import connect_ray
    from sessions.sweep import SweepDriver
    from sessions.sweep_spec import load_spec

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    runs = tmp_path / "runs"
    try:
        cluster.wait_for_nodes()
        connect_ray(cluster.address)
        head = ray.get_runtime_context().get_node_id()
        # long enough to be steered (it is stopped once the test has seen what it needs)
        spec = load_spec(spec_file(tmp_path, epochs=60, trials=4, concurrency=4, scheduler="pbt",
                                   extra=PBT.replace("perturbation_interval = 2", "perturbation_interval = 3"),
                                   space=SPACE))
        with Store(runs) as store, contextlib.ExitStack() as stack:
            driver = SweepDriver(store, spec)
            exploits = []
            driver.listeners.append(lambda e: exploits.append(e) if e["event"] == "exploit" else None)
            summary = {}
            thread = threading.Thread(target=lambda: summary.update(driver.run()), daemon=True)
            thread.start()
            stack.callback(lambda: (driver.stop(), thread.join(240)))  # whatever fails, Ray goes after the sweep
            deadline = time.monotonic() + 240
            far = None
            while far is None and time.monotonic() < deadline:
                far = next((t for t in list(driver.trials.values()) if t.node and t.node != head
                            and t.state == "running" and t.step > 0), None)
                time.sleep(0.2)
            assert far is not None, {t.trial: (t.node, t.state) for t in driver.trials.values()}
            def ctl_json(*words):
                p = subprocess.run([sys.executable, "-m", "tui.cli", "ctl", far.run, *words, "--json", "--runs-dir",
                                    str(runs)], capture_output=True, text=True, timeout=60, env=env())
                assert p.returncode == 0, p.stdout + p.stderr
                return json.loads(p.stdout)

            # paused, the trial is not judged by PBT (it reports nothing) and applies a change at once
            ctl_json("pause")
            until = time.monotonic() + 30
            while ctl_json("status")["state"] != "paused" and time.monotonic() < until:
                time.sleep(0.3)
            assert ctl_json("status")["state"] == "paused"
            ctl = subprocess.run([sys.executable, "-m", "tui.cli", "ctl", far.run, "set", "lr", "0.00421",
                                  "--runs-dir", str(runs)], capture_output=True, text=True, timeout=60, env=env())
            assert ctl.returncode == 0, ctl.stdout + ctl.stderr
            assert ctl_json("status")["run"] == far.run
            ctl_json("resume")
            while not exploits and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)  # a few steps at the new rate
            driver.stop()
            thread.join(240)
            assert not thread.is_alive() and summary["state"] == "stopped"
            run = store.get_run(far.run)
            assert exploits, "PBT did not exploit on the two-node cluster"
        hand = [e for e in run["events"] if e["kind"] == "lr" and "0.00421" in e["detail"]]
        assert len(hand) == 1 and "PBT" not in hand[0]["detail"], [e["detail"] for e in run["events"]]
        # the trial's optimizer took it: the steps after the change trained at that rate (until PBT changed it again)
        set_step = hand[0]["step"]
        after = [m for m in run["metrics"] if m["loss"] is not None and m["step"] > set_step]
        assert after and after[0]["lr"] == pytest.approx(0.00421), after[:2]
    finally:
        ray.shutdown()
        cluster.shutdown()
