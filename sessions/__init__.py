"""Runs: the SQLite session store and the trainer's recorder sink (``store``, ``recorder``), export of grader-ready
files (``export``), report figures and tables of stored runs (``report``), and live runs: the runner process
(``runner``, ``launch``) with its control socket and the viewers' side of it (``control``, ``protocol``).

    from sessions import Recorder, Store
    store = Store("runs")                 # runs/sessions.sqlite (WAL) and one folder per run
    run_id = store.new_run(config)
    trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), sinks=[Recorder(store, run_id)])
"""
from .recorder import Recorder
from .store import Store, StoreError

__all__ = ["Recorder", "Store", "StoreError"]
