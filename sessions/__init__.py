"""Persistence of runs: the SQLite session store, the trainer's recorder sink, export of grader-ready files, and
report figures and tables of stored runs (``sessions.report``).

    from sessions import Store, StoreError
    store = Store("runs")                 # runs/sessions.sqlite (WAL) and one folder per run
    run_id = store.new_run(config)
    trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), sinks=[store.recorder(run_id)])
"""
from .store import STATES, Store, StoreError

__all__ = ["STATES", "Store", "StoreError"]
