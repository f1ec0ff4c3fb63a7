"""On a shared machine a user's runs are theirs alone: run folders 0700 and every file in them (and the session store
with its -wal/-shm) 0600, whatever the umask; group read only when the runs folder is shared with a group on purpose;
links planted in a run folder are refused, never followed; an exported bestmodel.pth follows the umask like any file.
Real runner processes, a real store."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from sessions import Store
from sessions.launch import spawn
from sessions.remote import RemoteRun
from sessions.store import StoreError

SHORT = RunConfig(engine=1, data="sample", noise="poisson", epochs=2, batch_size=8, subset=32, n_val=8, eval_every=2,
                  device="cpu", model={"widths": [8, 16]})
LONG = RunConfig(**{**SHORT.to_dict(), "epochs": 5000})


@pytest.fixture
def umask():
    """Run the test under a given umask (the runners it spawns inherit it); the old one comes back after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Relative path -> permission bits of everything under ``root`` (the socket left out: it is 0600 anyway, and
    gone when the run ends)."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        st = p.lstat()
        if not stat.S_ISSOCK(st.st_mode):
            out[str(p.relative_to(root))] = stat.S_IMODE(st.st_mode)
    return out


def wait_state(runs, run_id, states, timeout=120.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Store(runs, create=False, readonly=True) as s:
            state = s.get_run(run_id, metrics=False, events=False)["state"]
        if state in states:
            return state
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached {states}")


def ended(started: dict, timeout: float = 120.0) -> str:
    """Wait until a spawned runner's process has ended; its run id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(f"/proc/{started['pid']}/stat") as f:
                if f.read().split()[2] == "Z":
                    return started["run"]
        except OSError:
            return started["run"]
        time.sleep(0.05)
    raise AssertionError(f"runner {started['pid']} did not end")


def stop(runs: Path, started: dict) -> str:
    """Stop a spawned run through its socket and wait until its runner process has ended; its run id."""
    remote = RemoteRun(runs / started["run"])
    remote.stop()
    remote.close()
    return ended(started)


def assert_private(runs: Path, folder: int = 0o700, file: int = 0o600) -> None:
    wrong = {}
    for name, mode in modes(runs).items():
        path = runs / name
        want = folder if path.is_dir() else file
        if name == ".":
            continue
        if mode != want:
            wrong[name] = oct(mode)
    assert not wrong, f"expected folders {oct(folder)}, files {oct(file)}: {wrong}"


def test_a_run_and_its_resume_leave_only_private_files_whatever_the_umask(tmp_path, umask):
    umask(0o000)   # the worst case: everything the umask lets through would be world-writable
    runs = tmp_path / "runs"
    started = spawn(runs, LONG)
    run = started["run"]
    deadline = time.time() + 60
    while not (runs / run / "best.json").exists() and time.time() < deadline:   # the first evaluation's files
        time.sleep(0.05)
    stop(runs, started)
    assert wait_state(runs, run, ("stopped",)) == "stopped"
    assert stat.S_IMODE(runs.stat().st_mode) == 0o700            # the runs folder n2n-tui made itself
    names = set(modes(runs))
    assert {"sessions.sqlite", f"{run}/best.pth", f"{run}/best.json", f"{run}/state.pth", f"{run}/runner.log",
            f"{run}/.lock"} <= names, names
    assert_private(runs)
    # a run folder an older n2n-tui left under umask 022 is made private when the run is taken up again; the resume
    # appends to runner.log and rewrites state.pth
    for p in [runs / run, *(runs / run).iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    stop(runs, spawn(runs, resume=run))
    assert_private(runs)


def test_a_runs_folder_shared_with_a_group_on_purpose_gives_it_read_access(tmp_path, umask):
    umask(0o077)   # a private umask: the shared folder, not the umask, decides
    runs = tmp_path / "runs"
    runs.mkdir()
    os.chmod(runs, 0o2770)                                          # the usual recipe: setgid, group rwx
    run = ended(spawn(runs, SHORT))
    assert wait_state(runs, run, ("finished",)) == "finished"
    assert_private(runs, folder=0o750, file=0o640)
    assert stat.S_IMODE((runs / run).stat().st_mode) & 0o7777 in (0o750, 0o2750)


def test_an_exported_bestmodel_follows_the_umask(tmp_path, umask):
    from tui.cli import main

    runs = tmp_path / "runs"
    run = ended(spawn(runs, SHORT))
    assert wait_state(runs, run, ("finished",)) == "finished"
    for mask, want in ((0o022, 0o644), (0o027, 0o640)):
        umask(mask)
        target = tmp_path / f"best-{mask:o}.pth"
        assert main(["export", run, "--to", str(target), "--runs-dir", str(runs), "--force"]) == 0
        assert stat.S_IMODE(target.stat().st_mode) == want
        assert stat.S_IMODE((runs / run / "best.pth").stat().st_mode) == 0o600   # the run's own copy stays private


def test_a_runner_log_replaced_by_a_link_is_not_followed(tmp_path, capsys):
    runs = tmp_path / "runs"
    started = spawn(runs, LONG)
    run = started["run"]
    stop(runs, started)
    victim = tmp_path / "someone-elses-file"
    victim.write_text("untouched\n")
    log = runs / run / "runner.log"
    log.unlink()
    log.symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        spawn(runs, resume=run)
    assert victim.read_text() == "untouched\n"
    assert log.is_symlink()


def test_a_store_that_is_a_link_is_refused(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    elsewhere = tmp_path / "elsewhere.sqlite"
    (runs / "sessions.sqlite").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symbolic link") as e:
        Store(runs)
    assert "\n" not in str(e.value) and not elsewhere.exists()
