"""A run killed with SIGKILL mid-epoch reads ``crashed`` and ``--resume`` continues it from its last full state with
its curves intact (real processes; the concurrent viewer is in test_cli_train.py)."""
from __future__ import annotations

import json
import signal

from sessions import Store
from test_cli_train import SMALL, cli, popen, read_until


def test_sigkill_mid_epoch_then_resume(tmp_path):
    runs = str(tmp_path)
    proc = popen("train", *SMALL, "--epochs", "2", "--eval-every", "4", "--json", "--runs-dir", runs)
    try:  # 8 steps per epoch: wait for the epoch-1 state, then kill in the middle of epoch 2
        lines = read_until(proc, lambda d: d["event"] == "saved" and d["what"] == "state")
        assert lines[-1]["step"] == 8
        lines += read_until(proc, lambda d: d["event"] == "step" and d["step"] >= 11)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    run = lines[0]["run"]

    with Store(runs) as s:
        r = s.get_run(run)
        assert r["state"] == "crashed" and r["events"][-1]["kind"] == "crashed"
        assert r["step"] >= 8 and r["metrics"][0]["step"] == 0

    res = cli("train", "--resume", run[:-2], "--json", "--runs-dir", runs)
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert out[0]["event"] == "state" and out[0]["run"] == run and "resumed from step 8" in out[0]["message"]
    assert [d["step"] for d in out if d["event"] == "step"] == list(range(9, 17))
    assert out[-1]["state"] == "finished"

    with Store(runs) as s:
        r = s.get_run(run)
    assert r["state"] == "finished" and r["step"] == 16
    steps = [m["step"] for m in r["metrics"] if m["loss"] is not None]
    assert steps == list(range(1, 17))  # the curve continues where it was: every step once, none twice
    assert [m["step"] for m in r["metrics"] if m["psnr"] is not None] == [0, 4, 8, 12, 16]
    kinds = [e["kind"] for e in r["events"]]
    assert kinds.index("crashed") < kinds.index("restart")
    assert (tmp_path / run / "best.pth").is_file()
