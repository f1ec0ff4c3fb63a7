"""A disk that refuses writes, as the kernel makes one (a real tmpfs, full or remounted read-only): a run on a full
disk fails saying so and keeps its previous checkpoint, a read-only runs folder can still be viewed, an export into a
read-only folder names its target, a full or read-only store says so while an export elsewhere still succeeds.
Needs root to mount (CI runs as root); skipped where mounting is not allowed."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from trainer_helpers import Log, cfg
from waiting import wait_until

from engine.trainer import Trainer
from sessions import Recorder, Store

torch.set_num_threads(1)


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 MiB file system (tmpfs) under tmp_path, remountable read-only: a full disk and a read-only folder
    as the kernel makes them. Needs root (CI runs as root); skipped where mounting is not allowed."""
    import os
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")

    try:
        yield SimpleNamespace(path=mnt, remount=lambda mode: subprocess.run(
            ["mount", "-o", f"remount,{mode}", str(mnt)], check=True))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder, leave: int = 0) -> None:
    """Fill the file system of ``folder`` up to ``leave`` bytes."""
    import os

    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to flush at close
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    if leave:
        os.truncate(folder / "filler", os.path.getsize(folder / "filler") - leave)


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tiny_models, poisson_data, small_disk):
    runs = small_disk.path / "runs"
    config = cfg(epochs=3)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        log = Log()
        t.add_sink(log)
        t.add_sink(lambda e: t.pause() if e.kind == "step" and e.step == 40 else None)
        t.start()
        wait_until(lambda: any(e.kind == "saved" and e.what == "state" and e.step == 40 for e in log))
        state_before = (runs / run / "state.pth").read_bytes()
        _fill(small_disk.path, leave=64 * 1024)  # room for the store's rows, not for a checkpoint
        t.resume()
        t.join(60)
    assert t.state == "failed" and t.message.startswith("WriteError: no space left on device: ")
    assert str(runs / run) in t.message and ".tmp" not in t.message
    assert (runs / run / "state.pth").read_bytes() == state_before  # the previous checkpoint, intact
    assert not [p for p in (runs / run).iterdir() if p.name.endswith(".tmp")]


def test_viewing_works_in_a_read_only_runs_folder(small_disk, capsys):
    import json

    from engine.events import StateEvent
    from tui.cli import main

    runs = small_disk.path / "runs"
    with Store(runs) as s:
        done = s.new_run(cfg())
        s.set_state(done, "stopped")
        gone = s.new_run(cfg())
        Recorder(s, gone)(StateEvent(gone, "running"))
        s.release(gone)  # its process died, and nobody has looked since
    small_disk.remount("ro")
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert done in out and gone in out
    assert main(["show", gone, "--json", "--runs-dir", str(runs)]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "crashed"
    assert main(["runs", "--json", "--runs-dir", str(runs)]) == 0
    assert {r["id"]: r["state"] for r in json.loads(capsys.readouterr().out)} == {done: "stopped", gone: "crashed"}


def test_an_export_into_a_read_only_folder_names_the_target(trained_run, small_disk, capsys):
    from tui.cli import main

    runs, run, _ = trained_run
    small_disk.remount("ro")
    target = small_disk.path / "bestmodel.pth"
    assert main(["export", run, "--to", str(target), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"n2n-tui: error: read-only file system: {target}", err


def test_a_full_or_read_only_runs_folder_says_so_and_an_export_elsewhere_still_succeeds(
        tiny_models, poisson_data, small_disk, tmp_path, capsys):
    from tui.cli import main

    runs = small_disk.path / "runs"
    config = cfg(subset=64, eval_every=4)
    with Store(runs) as s:
        run = s.new_run(config)
        t = Trainer(config, run_id=run, run_dir=s.run_dir(run), dataset=poisson_data, sinks=[Recorder(s, run)])
        assert t.run() == "finished"
    db = runs / "sessions.sqlite"
    _fill(small_disk.path)
    assert main(["tag", run, "a note that needs a page", "--runs-dir", str(runs)]) == 2
    assert capsys.readouterr().err.strip() == f"n2n-tui: error: no space left on device: {db}"
    target = tmp_path / "bestmodel.pth"  # another file system, with room
    assert main(["export", run, "--to", str(target), "--force", "--runs-dir", str(runs)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {target}") and target.is_file()
    assert f"the export is done, but the store could not note it (no space left on device: {db})" in err
    (small_disk.path / "filler").unlink()
    small_disk.remount("ro")
    assert main(["tag", run, "x", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"n2n-tui: error: {db}") and "read-only" in err and "rollback" not in err, err
    assert main(["export", run, "--to", str(target), "--force", "--runs-dir", str(runs)]) == 0
    assert "could not note it" in capsys.readouterr().err
