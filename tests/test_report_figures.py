"""Where the report's noisy baseline comes from: the store keeps the PSNR of each run's noisy validation input
(schema 7; an older store is upgraded)."""
from __future__ import annotations

import json
import sqlite3

from engine.config import RunConfig
from engine.events import EvalEvent, StateEvent
from sessions import Recorder, Store
from sessions.store_file import SCHEMA, SCHEMA_VERSION


def test_an_older_store_is_upgraded_and_then_keeps_the_baseline(tmp_path):
    """A schema-6 store (before the baseline was kept): opened for writing it gains the column, its runs read None
    (the report recomputes theirs), and a new run's evaluations record it."""
    root = tmp_path / "runs"
    root.mkdir()
    conn = sqlite3.connect(root / "sessions.sqlite")
    conn.executescript(SCHEMA.replace(",\n    psnr_noisy REAL", ""))
    conn.executemany("INSERT INTO n2n_meta VALUES (?, ?)", [("app", "n2n-tui"), ("schema", "6")])
    conn.execute("INSERT INTO runs (id, engine, config, state, started, updated) VALUES "
                 "('20240101-000000-aaaa', 1, ?, 'finished', 1, 2)", (json.dumps(RunConfig().to_dict()),))
    conn.commit()
    assert "psnr_noisy" not in [c[1] for c in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    with Store(root) as s:
        assert s.get_run("20240101-000000-aaaa")["psnr_noisy"] is None
        run = s.new_run(RunConfig())
        rec = Recorder(s, run)
        rec(EvalEvent(run, 0, 0, 12.0, 12.0, psnr_noisy=20.5))
        rec(StateEvent(run, "finished"))
        assert s.get_run(run)["psnr_noisy"] == 20.5
    conn = sqlite3.connect(root / "sessions.sqlite")
    assert conn.execute("SELECT value FROM n2n_meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)
    assert SCHEMA_VERSION == 7
    conn.close()
