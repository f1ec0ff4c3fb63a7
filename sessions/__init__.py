"""Runs: where they are kept, the processes that own them, and the handles viewers watch them through.

- the store: ``store`` (runs, metric points, events, samples, sweeps in ``<runs>/sessions.sqlite``), with its parts
  ``store_file`` (schema, migrations, opening the database safely) and ``run_locks`` (which process drives a run);
  ``recorder`` (the trainer's sink into it);
- live runs: ``launch`` (start, resume, attach: the one place runs are opened), ``runner`` (the process that owns a
  run: ``python -m sessions.runner``), ``server`` (its control socket), ``remote`` (a viewer's side of that socket),
  ``protocol`` (the wire format), ``handle`` (``RunHandle``: the one face viewers use);
- sweeps on Ray Tune: ``sweep_spec`` (the TOML spec, no Ray), ``ray_cluster`` (local Ray or a cluster), ``trial``
  (what runs in a Ray worker), ``sweep`` (the driver, and a trial as a run handle);
- ``export`` (a run's best weights as a verified grader ``bestmodel.pth``), ``report`` (figures and tables).

    from sessions import Recorder, Store
    store = Store("runs")                 # runs/sessions.sqlite (WAL) and one folder per run
    run_id = store.new_run(config)
    trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), sinks=[Recorder(store, run_id)])
"""
from .recorder import Recorder
from .store import Store, StoreError

__all__ = ["Recorder", "Store", "StoreError"]
