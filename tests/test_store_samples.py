"""The store keeps every evaluation's sample patches (schema 2), written by the Recorder and read back by step;
an existing version-1 store is upgraded in place when opened."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch

from engine.config import RunConfig
from engine.events import EvalEvent, StateEvent
from engine.trainer import Trainer
from sessions import Recorder, Store, StoreError
from sessions.store_file import SCHEMA_VERSION

torch.set_num_threads(1)


def patches(step: int, k: int = 4):
    g = torch.Generator().manual_seed(step)
    return tuple(torch.randint(0, 256, (k, 3, 32, 32), generator=g, dtype=torch.uint8) for _ in range(3))


V1_SCHEMA = """
CREATE TABLE n2n_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, engine INTEGER NOT NULL, config TEXT NOT NULL,
    state TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 0, epoch INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,
    lr REAL, best_psnr REAL, best_step INTEGER,
    started REAL NOT NULL, ended REAL, updated REAL NOT NULL, pid INTEGER, host TEXT
);
CREATE TABLE metrics (
    run TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER, loss REAL, lr REAL, psnr REAL, img_per_s REAL,
    PRIMARY KEY (run, step)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '', step INTEGER
);
CREATE INDEX events_by_run ON events (run, id);
CREATE TABLE checkpoints (
    run TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, step INTEGER, psnr REAL, time REAL NOT NULL,
    PRIMARY KEY (run, kind)
);
"""  # the first released schema, before live time and sample patches


def make_v1_store(root):
    """A store as n2n-tui wrote it before sample patches existed, with one finished run."""
    root.mkdir()
    conn = sqlite3.connect(root / "sessions.sqlite")
    conn.executescript(V1_SCHEMA)
    conn.executemany("INSERT INTO n2n_meta VALUES (?, ?)", [("app", "n2n-tui"), ("schema", "1")])
    conn.execute("INSERT INTO runs (id, engine, config, state, started, updated) VALUES "
                 "('20240101-000000-aaaa', 1, ?, 'finished', 1, 2)", (json_config(),))
    conn.execute("INSERT INTO metrics (run, step, psnr) VALUES ('20240101-000000-aaaa', 10, 25.0)")
    conn.commit()
    conn.close()


def json_config():
    import json

    cfg = RunConfig().to_dict()
    cfg.pop("loss")  # written before the loss option existed
    return json.dumps(cfg)


def test_version_1_store_is_upgraded_in_place(tmp_path):
    make_v1_store(tmp_path / "runs")
    with Store(tmp_path / "runs") as s:
        [run] = s.list_runs()
        assert run["id"] == "20240101-000000-aaaa" and s.get_run("last")["metrics"][0]["psnr"] == 25.0
        assert s.samples(run["id"]) == {"steps": [], "step": None, "noisy": None, "denoised": None, "clean": None}
        assert RunConfig.from_dict(run["config"]).validate().noise == "mix"
    conn = sqlite3.connect(tmp_path / "runs" / "sessions.sqlite")
    assert conn.execute("SELECT value FROM n2n_meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'samples'").fetchone() == (1,)
    conn.close()
    with Store(tmp_path / "runs") as s:  # opening again: nothing left to do
        assert len(s.list_runs()) == 1


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    make_v1_store(tmp_path / "runs")
    conn = sqlite3.connect(tmp_path / "runs" / "sessions.sqlite")
    conn.execute("UPDATE n2n_meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema '99'"):
        Store(tmp_path / "runs")


def test_recorder_keeps_every_evaluations_patches(tmp_path):
    with Store(tmp_path) as s:
        run = s.new_run(RunConfig())
        rec = Recorder(s, run)
        rec(StateEvent(run, "running"))
        for step in (0, 50, 100):
            rec(EvalEvent(run, step, 1, 20.0 + step / 100, 21.0, *patches(step)))
        rec(EvalEvent(run, 150, 1, 22.0, 22.0))  # no patches: nothing stored for it
        rec(StateEvent(run, "finished", step=150))
        got = s.samples(run[:12])
        assert got["steps"] == [0, 50, 100] and got["step"] == 100
        for key, want in zip(("noisy", "denoised", "clean"), patches(100)):
            assert got[key].dtype == np.uint8 and np.array_equal(got[key], want.numpy())  # numpy: viewers need no torch
        assert np.array_equal(s.samples(run, step=50)["denoised"], patches(50)[1].numpy())
        with pytest.raises(StoreError, match="no sample patches at step 60"):
            s.samples(run, step=60)
        s.begin_resume(run, 50)  # continuing from step 50: recorded patches stay until a step done again replaces them
        rec = Recorder(s, run)
        rec(EvalEvent(run, 100, 1, 23.0, 23.0, *patches(7)))
        rec.flush()
        assert s.samples(run)["steps"] == [0, 50, 100]
        assert np.array_equal(s.samples(run)["noisy"], patches(7)[0].numpy())


def test_a_real_run_stores_the_patches_of_each_evaluation(tmp_path, tiny_models, poisson_data):
    with Store(tmp_path) as s:
        cfg = RunConfig(engine=1, epochs=1, batch_size=64, subset=128, n_val=64, eval_every=1, noise="poisson")
        run = s.new_run(cfg)
        Trainer(cfg, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data,
                sinks=[Recorder(s, run)]).run()
        evals = [m["step"] for m in s.get_run(run)["metrics"] if m["psnr"] is not None]
        got = s.samples(run, step=0)
        assert s.samples(run)["steps"] == evals == [0, 1, 2]
        assert got["noisy"].shape == (6, 3, 32, 32) and np.array_equal(got["clean"], s.samples(run)["clean"])
