"""``PopulationView``: a sweep's population as it trains (population-based training): per trial its state, best PSNR,
current hyper-parameters, and whose weights it took, when, as a timeline."""
from __future__ import annotations

import json

from rich.text import Text
from textual.widget import Widget

from .trials_table import STATE_STYLE

STATE_SHORT = {"running": "run", "finished": "done", "stopped": "stop", "failed": "fail", "pending": "wait",
               "paused": "wait"}
NAME_SHORT = {"batch_size": "bs", "schedule": "sched", "decay_to": "decay", "step_every": "every", "warmup": "warm",
              "eval_every": "eval"}  # a column's header is as wide as its name: long ones cost every line


def fmt_value(v) -> str:
    """A hyper-parameter's value, compact: small and large floats as ``3.6e-03`` (up to 3 significant digits)."""
    if isinstance(v, float):
        if v != 0 and (abs(v) < 0.1 or abs(v) >= 1e4):
            mantissa, exponent = f"{v:.2e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
        return f"{v:.3g}"
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def fmt_step(step) -> str:
    return f"{step / 1000:.3g}k" if step >= 10000 else str(step)


def short_ids(ids: list[str]) -> dict[str, str]:
    """Trial ids without the part they all share: Ray Tune names trials ``<experiment>_<number>`` (``a1b2c_00003``),
    and the experiment prefix, eleven characters on each line and thrice in a timeline, says nothing here."""
    prefixes = {i.rpartition("_")[0] for i in ids}
    if len(ids) > 1 and len(prefixes) == 1 and "" not in prefixes:
        return {i: i.rpartition("_")[2] for i in ids}
    return {i: i for i in ids}


def changes_text(changes: dict) -> str:
    return ", ".join(f"{k} {fmt_value(old)} -> {fmt_value(new)}" for k, (old, new) in changes.items())


def exploit_entry(e: dict) -> str:
    """The event log's line for an ``exploit`` event of the sweep driver."""
    where = [f"step {e['from_step']}"] + ([f"{e['from_psnr']:.1f} dB"] if e.get("from_psnr") is not None else [])
    changes = changes_text(e.get("changes") or {})
    return f"{e['trial']} took {e['from_trial']}'s weights ({', '.join(where)})" + (f": {changes}" if changes else "")


def trial_set_entry(e: dict) -> str:
    """The event log's line for a ``trial_set`` event (a person changed a trial's hyper-parameter)."""
    return f"{e['trial']}: {changes_text({e['name']: (e.get('old'), e['value'])})} (by {e.get('by') or 'hand'})"


class PopulationView(Widget):
    """``show_population(trials, scheduler, selected)`` with ``TrialView``-like dicts: one line per trial, best PSNR
    first as in the trials table (when the population outgrows the area, the lines cut off are the trials that matter
    least, and the leader's lineage is the one people ask about), under a header naming the columns. The line ends
    with the trial's lineage, oldest first: ``← t0@96 ← t3@192`` is "took t0's weights at step 96, then t3's at 192"
    (the trial's own step when it was replaced); when that is wider than the area, the oldest exploits give way to
    ``…`` (the count before them, ``×``, says how many there were). The selected trial's line is highlighted, and the
    rows left below list its exploits in full: whose weights at which of their steps, their PSNR, what was explored."""

    DEFAULT_CSS = """
    PopulationView {
        height: 1fr;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.trials: list[dict] = []
        self.scheduler = ""
        self.selected: str | None = None

    def show_population(self, trials: list[dict], scheduler: str = "", selected: str | None = None) -> None:
        self.trials = sorted(trials, key=lambda t: -(t["best_psnr"] if t["best_psnr"] is not None else float("-inf")))
        self.scheduler, self.selected = scheduler, selected
        self.refresh()

    @property
    def exploits(self) -> int:
        return sum(len(t.get("lineage") or ()) for t in self.trials)

    def lines(self, width: int, height: int = 1000) -> list[Text]:
        """The view as at most ``height`` lines ``width`` cells wide (a last line says what did not fit)."""
        if not self.trials:
            return [Text("no trial has started yet", style="dim")]
        ids = [t["trial"] for t in self.trials] + [x["from_trial"] for t in self.trials for x in t.get("lineage") or ()]
        short = short_ids(list(dict.fromkeys(ids)))
        out = self._population(short, width)
        if len(out) > height:
            cut = len(out) - height + 1
            out = out[:height - 1] + [Text(f"… {cut} more lines (the trials table lists every trial)", style="dim")]
        elif len(out) + 2 <= height:
            out += self._detail(short, height - len(out))
        for line in out:
            line.truncate(width, overflow="ellipsis")
        return out

    def _population(self, short: dict[str, str], width: int) -> list[Text]:
        names = list(dict.fromkeys(k for t in self.trials for k in t["params"]))
        cols = [("trial", [short[t["trial"]] for t in self.trials], "<"),
                ("state", [STATE_SHORT.get(t["state"], t["state"]) for t in self.trials], "<"),
                ("best", [f"{t['best_psnr']:.2f}" if t["best_psnr"] is not None else "–" for t in self.trials], ">")]
        cols += [(NAME_SHORT.get(k, k), [fmt_value(t["params"].get(k, "–")) for t in self.trials], ">") for k in names]
        lineages = self.scheduler == "pbt" or self.exploits > 0  # else no column says "none" on every line
        if lineages:
            cols.append(("×", [str(len(t.get("lineage") or ())) for t in self.trials], ">"))
        widths = [max(len(head), *(len(v) for v in values)) for head, values, _ in cols]

        def row(cells: list[str]) -> str:
            return " ".join(f"{c:{align}{w}}" for c, w, (_, _, align) in zip(cells, widths, cols))

        header = row([head for head, _, _ in cols])
        room = width - len(header) - 1
        lineage = next((h for h in ("lineage: ← took the weights of trial@step", "← took weights of@step",
                                    "← from@step") if len(h) <= room), "") if lineages else ""
        out = [Text(f"{header} {lineage}".rstrip(), style="bold")]
        for i, t in enumerate(self.trials):
            fixed = row([values[i] for _, values, _ in cols])
            line = Text(fixed, style="reverse" if t["trial"] == self.selected else "")
            line.stylize(STATE_STYLE.get(t["state"], ""), widths[0] + 1, widths[0] + 1 + widths[1])
            if lineages:
                line.append(" " + self._timeline(t.get("lineage") or [], short, room), style="cyan")
            out.append(line)
        if self.exploits == 0:
            out.append(Text("no exploit yet: no trial took another's weights" if lineages else
                            f"scheduler {self.scheduler or 'none'}: trials keep their own weights", style="dim"))
        return out

    def _detail(self, short: dict[str, str], rows: int) -> list[Text]:
        """The selected trial's exploits, one a line, the newest that fit in ``rows`` (a blank line first)."""
        trial = next((t for t in self.trials if t["trial"] == self.selected), None)
        lineage = (trial or {}).get("lineage") or []
        if not lineage:
            return []
        lines = []
        for x in lineage:
            psnr = f" {x['from_psnr']:.2f} dB" if x.get("from_psnr") is not None else ""
            changes = changes_text(x.get("changes") or {})
            lines.append(Text(f"{fmt_step(x['step']):>5} ← {short.get(x['from_trial'], x['from_trial'])}"
                              f"@{fmt_step(x['from_step'])}{psnr}" + (f": {changes}" if changes else "")))
        head = Text(f"{short[trial['trial']]}'s exploits: step ← from@step, PSNR", style="bold")
        keep = rows - 2
        if len(lines) > keep:
            lines = [Text(f"  … {len(lines) - keep + 1} older", style="dim")] + lines[len(lines) - keep + 1:]
        return [Text(""), head, *lines]

    @staticmethod
    def _timeline(lineage: list[dict], short: dict[str, str], room: int) -> str:
        """``← t0@96 ← t3@192``, the newest exploits that fit in ``room`` cells (``…`` for the older ones)."""
        if not lineage:
            return "–"
        parts = [f"← {short.get(x['from_trial'], x['from_trial'])}@{fmt_step(x['step'])}" for x in lineage]
        kept = []
        for part in reversed(parts):
            if len(" ".join([part, *kept])) + (2 if len(kept) + 1 < len(parts) else 0) > room and kept:
                break
            kept.insert(0, part)
        return ("… " if len(kept) < len(parts) else "") + " ".join(kept)

    def render(self) -> Text:
        size = self.content_size
        return Text("\n").join(self.lines(max(size.width, 1), max(size.height, 1)))
