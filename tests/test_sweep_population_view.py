"""The sweep view of a population-based (PBT) sweep at 80x24: the population view (each trial's current
hyper-parameters and whose weights it took, when), the ``p`` key that swaps it with the plots, the title's count of
exploits, the event log's lines for exploits and changes by hand; and an ASHA sweep, where ``p`` still works. The
driver is fed by hand (trial views, recorders, events), as the driver's scheduler side would: no Ray."""
from __future__ import annotations

import asyncio

from fakes import train_args
from textual.geometry import Region
from waiting import wait_for

from engine.config import RunConfig
from sessions import Recorder, Store
from sessions.sweep import SweepDriver, TrialView
from sessions.sweep_spec import check_spec
from tui.app import N2NApp
from tui.widgets import EventLog, PopulationView, PsnrPlot, TrialsTable
from tui.widgets.population import fmt_value, short_ids
from tui.widgets.trials_table import COLUMNS

SIZE = (80, 24)  # the smallest terminal the dashboard promises
# trial -> (lr, batch size, best PSNR); t3 leads
TRIALS = {"t0": (3e-3, 8, 24.1), "t1": (1e-3, 16, 23.2), "t2": (3e-4, 4, 22.5), "t3": (7.2e-3, 8, 24.6)}


def make_driver(tmp_path, scheduler: str) -> SweepDriver:
    spec = check_spec({"engine": 1, "epochs": 1, "space": {"lr": {"loguniform": [1e-4, 1e-2]},
                                                          "batch_size": {"choice": [4, 8, 16]}}})
    spec.scheduler = scheduler
    store = Store(tmp_path / "runs")
    driver = SweepDriver(store, spec)
    for trial, (lr, bs, best) in TRIALS.items():
        run = store.new_run(RunConfig(lr=lr, batch_size=bs, sweep=driver.sweep_id, trial=trial))
        driver.trials[trial] = TrialView(trial, run, {"lr": lr, "batch_size": bs}, state="running", step=96,
                                         total_steps=400, psnr=best, best_psnr=best, best_step=96,
                                         history=[(0, 18.0), (96, best)])
        driver.recorders[trial] = Recorder(store, run)
    return driver


def exploit(driver, trial: str, source: str, step: int, new_lr: float) -> dict:
    """What the driver does on an exploit: the trial's lineage and params first, then the event."""
    view, src = driver.trials[trial], driver.trials[source]
    changes = {"lr": [view.params["lr"], new_lr]}
    view.lineage.append({"step": step, "time": 0.0, "from_trial": source, "from_run": src.run, "from_step": step,
                         "from_psnr": src.best_psnr, "changes": changes})
    view.params["lr"] = new_lr
    return {"event": "exploit", "trial": trial, "run": view.run, "from_trial": source, "from_run": src.run,
            "step": step, "from_step": step, "from_psnr": src.best_psnr, "changes": changes}


def shown(widget) -> list[str]:
    """The lines the widget paints (its top border included), as plain text, cut to its size on screen."""
    return [strip.text.rstrip() for strip in widget.render_lines(Region(0, 0, *widget.outer_size))]


def plots(screen) -> bool:
    """Whether the PSNR and loss plots are on screen."""
    return screen.query_one("#sweep-plots").display and screen.query_one(PsnrPlot).region.height > 0


def title(screen) -> str:
    return str(screen.query_one("#sweep-title").render())


def test_a_pbt_sweep_shows_its_population_and_lineage_at_80x24(tmp_path):
    driver = make_driver(tmp_path, "pbt")
    # two exploits per trial, at steps 96 and 192: the lineage each trial ends with
    plan = [("t1", "t0", 96, 3.6e-3), ("t2", "t3", 96, 8.6e-3), ("t0", "t3", 96, 6e-3), ("t3", "t0", 96, 7.2e-3),
            ("t1", "t3", 192, 4.3e-3), ("t2", "t0", 192, 7e-3), ("t0", "t1", 192, 5.2e-3), ("t3", "t1", 192, 8e-3)]

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=driver.store, sweep=driver, start=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            pop, table = screen.query_one(PopulationView), screen.query_one(TrialsTable)
            log = screen.query_one(EventLog)
            screen.events.put(exploit(driver, *plan[0]))
            assert await wait_for(pilot, lambda: table.row_count == 4)
            # a pbt sweep opens on its population, in full view at 80x24
            assert screen.population_shown and pop.display
            assert pop.region.right <= SIZE[0] and pop.region.bottom <= SIZE[1] - 1  # above the footer
            assert "t1 took t0's weights (step 96, 24.1 dB): lr 1e-03 -> 3.6e-03" in log.entries
            params = COLUMNS.index("params")
            assert "lr=0.0036" in str(table.get_row("t1")[params])  # the table shows the lr it took, not the first
            assert "scheduler pbt · 1 exploit ·" in title(screen)

            for step in plan[1:]:
                screen.events.put(exploit(driver, *step))
            screen.events.put({"event": "trial_set", "trial": "t2", "run": driver.trials["t2"].run, "name": "lr",
                               "value": 2e-3, "old": 1e-3, "by": "hand"})
            assert await wait_for(pilot, lambda: "scheduler pbt · 8 exploits" in title(screen))
            assert "t2: lr 1e-03 -> 2e-03 (by hand)" in log.entries
            assert "t3 took t1's weights (step 192, 23.2 dB): lr 7.2e-03 -> 8e-03" in log.entries
            assert "lr=0.0043" in str(table.get_row("t1")[params])

            text = shown(pop)
            lines = {t: next((ln for ln in text if ln.startswith(t + " ")), "") for t in TRIALS}
            for trial, view in driver.trials.items():  # every trial, its current lr and its whole lineage, one line
                line = lines[trial]
                assert fmt_value(view.params["lr"]) in line, (trial, text)
                froms = " ".join(f"← {x['from_trial']}@{x['step']}" for x in view.lineage)
                assert line.endswith(froms), (trial, text)
                assert " 2 " in line  # replaced twice
            assert "← t0@96 ← t3@192" in lines["t1"] and "4.3e-03" in lines["t1"]
            header = next(i for i, ln in enumerate(text) if ln.startswith("trial state"))
            assert [ln.split()[0] for ln in text[header + 1:header + 5]] == ["t3", "t0", "t1", "t2"]  # as the table
            # the rows below: the selected trial's exploits in full, following the table's cursor
            table.move_cursor(row=table.order.index("t1"))
            assert await wait_for(pilot, lambda: any(ln.startswith("t1's exploits") for ln in shown(pop)))
            assert any("192 ← t3@192 24.60 dB: lr 3.6e-03 -> 4.3e-03" in ln for ln in shown(pop))

            await pilot.press("p")  # the plots, in the same place
            assert await wait_for(pilot, lambda: plots(screen) and not pop.display)
            assert screen.query_one(PsnrPlot).region.right <= SIZE[0]
            assert await wait_for(pilot, lambda: screen.query_one(PsnrPlot).n_points > 0)
            await pilot.press("p")
            assert await wait_for(pilot, lambda: pop.display and not plots(screen))

    asyncio.run(go())


def test_an_asha_sweep_opens_on_its_plots_and_p_shows_a_population_without_lineage(tmp_path):
    driver = make_driver(tmp_path, "asha")

    async def go():
        app = N2NApp(train_args(runs_dir=str(tmp_path / "runs")), store=driver.store, sweep=driver, start=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            pop = screen.query_one(PopulationView)
            screen.events.put({"event": "trial_result", "trial": "t1"})
            assert await wait_for(pilot, lambda: screen.query_one(TrialsTable).row_count == 4)
            assert not screen.population_shown and plots(screen) and not pop.display
            assert "exploit" not in title(screen)
            await pilot.press("p")
            assert await wait_for(pilot, lambda: pop.display and not plots(screen))
            text = shown(pop)
            for trial, (lr, _, best) in TRIALS.items():
                line = next(ln for ln in text if ln.startswith(trial + " "))
                assert fmt_value(lr) in line and f"{best:.2f}" in line, text
                assert "←" not in line
            assert any("scheduler asha: trials keep their own weights" in ln for ln in text), text
            await pilot.press("p")
            assert await wait_for(pilot, lambda: screen.query_one(PsnrPlot).n_points > 0)

    asyncio.run(go())


def test_a_long_lineage_keeps_its_newest_exploits_and_ray_ids_lose_their_shared_prefix():
    ids = [f"a1b2c_0000{i}" for i in range(3)]
    assert short_ids(ids) == {i: i[-5:] for i in ids}
    assert short_ids(["t0", "t1"]) == {"t0": "t0", "t1": "t1"}
    assert short_ids(["a_1", "b_2"]) == {"a_1": "a_1", "b_2": "b_2"}  # nothing shared: as they are
    assert (fmt_value(0.0036), fmt_value(0.00361234), fmt_value(1e-3), fmt_value(0.5), fmt_value(8),
            fmt_value([8, 16])) == ("3.6e-03", "3.61e-03", "1e-03", "0.5", "8", "[8,16]")

    lineage = [{"step": s, "time": 0.0, "from_trial": ids[1], "from_run": "r", "from_step": s, "from_psnr": 24.0,
                "changes": {"lr": [1e-3, 2e-3]}} for s in (1200, 2400, 3600, 4800, 12000)]
    trial = {"trial": ids[0], "params": {"lr": 2e-3}, "state": "running", "best_psnr": 24.5, "lineage": lineage}
    view = PopulationView()
    view.show_population([trial], "pbt", selected=ids[0])
    line = view.lines(48)[1].plain
    assert len(line) <= 48 and line.startswith("00000 ") and "2e-03" in line
    assert " 5 " in line and "… " in line and line.endswith("← 00001@12k")  # the newest stay; the count tells all
    assert "← 00001@1200" in view.lines(200)[1].plain  # room for all: no …
    assert "… " not in view.lines(200)[1].plain
    detail = [ln.plain for ln in view.lines(48, 8)]  # 8 rows: the newest exploits of the selected trial, in full
    assert detail[3].startswith("00000's exploits") and "older" in detail[4]
    assert len(detail) == 8 and detail[-1].endswith("12k ← 00001@12k 24.00 dB: lr 1e-03 -> 2e-03")
