"""The ``n2n-tui`` argument parser and its option types, below both the command line (``tui.cli``) and the places
that need the same defaults (``tui.commands.train_cmd``, the launcher), so none of them imports another."""
from __future__ import annotations

import argparse
import os
import re

EXIT_BAD_INPUT = 2
# a value like -inf or -1e-3 is a (bad) number for an option, not an option name: argparse's own pattern misses them
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def _int_type(lo: int, hi: int, what: str):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} up to {hi:,}, got {s}")
        return v

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}")
    return v


def _engine(s: str) -> int:
    if s not in ("1", "2"):
        raise argparse.ArgumentTypeError(f"engine must be 1 or 2, got {s!r}")
    return int(s)


def _threads(s: str) -> str:
    """``auto`` or a thread count, kept as text (``engine.threads``)."""
    from engine.threads import parse_threads, threads_text

    try:
        return threads_text(parse_threads(s))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_threads, default=None, metavar="N|auto",
                   help="torch CPU threads: a count, or auto, which fits what the machine has free (default: "
                        "$N2N_THREADS, else auto)")


def threads_setting(args) -> str:
    """``--threads``, else ``$N2N_THREADS``, else auto (a bad $N2N_THREADS is a UsageError naming it)."""
    from engine.threads import default_setting
    from tui.errors import UsageError

    if getattr(args, "threads", None) is not None:
        return args.threads
    try:
        return default_setting()
    except ValueError as e:
        raise UsageError(str(e)) from None


def _noise(s: str) -> str:
    """A noise spec (``gaussian``, ``gaussian:25``...), kept as its canonical string."""
    from engine.specs import parse_noise

    try:
        return str(parse_noise(s))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_DEVICE = "cpu or cuda (default: cuda when available, else cpu)"
_DATA_HELP = ("sample | leaves | pypi | course:DIR | images:DIR, or a mix (sample+leaves, sample@0.3+leaves@0.7) "
              "(default: course:data if ./data/train_data.pkl exists, else sample)")


def _path(s: str) -> str:
    if not s.strip():
        raise argparse.ArgumentTypeError("empty path")
    return s


def package_version() -> str:
    """The installed distribution's version; in a source tree that is not installed, the one pyproject.toml names."""
    from importlib import metadata

    try:
        return metadata.version("n2n-tui")
    except metadata.PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
        if project.get("name") == "n2n-tui" and project.get("version"):
            return f"{project['version']} (source tree, not installed)"
    except (OSError, ValueError, KeyError):
        pass
    return "unknown (not installed)"


class _Version(argparse.Action):
    """``--version``: the version on stdout, exit 0 (looked up only when asked: every command builds the parser)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"n2n-tui {package_version()}")
        parser.exit(0)


def _no_default(default) -> bool:
    """Defaults not worth saying in --help: none, a flag's off, an empty list (``0`` is worth saying)."""
    return (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
            or (isinstance(default, (list, tuple)) and not default))


class _HelpFormatter(argparse.HelpFormatter):
    """Each option's default at the end of its help, ``(default: X)``, unless it has none worth saying or its help
    says it already (a default that depends on something: the model, the machine, a file)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or _no_default(action.default) or "default" in text.lower():
            return text
        shown = str(action.default).replace("%", "%%")  # argparse %-formats help: a value's own % is a character
        return f"{text} (default: {shown})" if text else f"default: {shown}"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str):  # one line and exit 2, like every other bad input
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def default_runs_dir() -> str:
    """``$N2N_RUNS_DIR`` when set and not empty, else ``runs``: the same folder for every command."""
    return os.environ.get("N2N_RUNS_DIR", "").strip() or "runs"


def _add_runs_dir(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--runs-dir``, before the command or after it. Only the top level has a default: a command's own default
    would silently replace a ``n2n-tui --runs-dir DIR COMMAND`` given before it (argparse's sub-parser defaults)."""
    p.add_argument("--runs-dir", type=_path, default=default_runs_dir() if top else argparse.SUPPRESS,
                   help="where sessions are stored (default: ./runs, or $N2N_RUNS_DIR)")


def _eval_every(s: str) -> int | str:
    from engine.cadence import eval_every_text, parse_eval_every

    try:
        text = eval_every_text(parse_eval_every(s))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("eval_every ")) from None
    return text if text == "auto" else int(text)


def _add_marks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mark", action="append", default=[], metavar='PSNR:LABEL',
                   help='a reference line on the PSNR plots, e.g. 24:"course 8-layer net" (repeatable; also '
                        '[[mark]] tables in RUNS/marks.toml)')


_ENSEMBLE = ("average the model's outputs over the image's 8 rotations and mirror images: a little more PSNR "
             "(about 0.2 dB) for 8 times the time")


def build_parser() -> argparse.ArgumentParser:
    from engine.config import MAX_BATCH, MAX_EPOCHS, MAX_EVAL_EVERY, MAX_SEED
    from engine.schedule import SCHEDULES
    from engine.specs import CROP, FAMILIES, MAX_CROP, MAX_PAIRS, SPEC_FORMS

    epochs = _int_type(1, MAX_EPOCHS, "a positive integer")
    batch = _int_type(1, MAX_BATCH, "a positive integer")
    pairs = _int_type(1, MAX_PAIRS, "a positive integer")
    every = _int_type(0, MAX_EVAL_EVERY, "a non-negative integer")
    seed = _int_type(0, MAX_SEED, "a non-negative integer")

    p = _Parser(prog="n2n-tui", description="Train Noise2Noise denoisers and watch them learn.")
    p.add_argument("--version", action=_Version, help="print the version of n2n-tui and exit")
    _add_runs_dir(p, top=True)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="start a training run (dashboard, or --headless)")
    t.add_argument("--engine", type=_engine, default=1, help="1: Miniproject_1 (PyTorch), 2: Miniproject_2")
    t.add_argument("--data", default=None, help=_DATA_HELP)
    t.add_argument("--noise", default="mix", type=_noise, metavar="SPEC",
                   help=f"noise for generated data: {', '.join(FAMILIES)} (random strength), or {SPEC_FORMS}")
    t.add_argument("--loss", choices=["l1", "l2"], default=None, help="training loss (default: the model's own, l1)")
    t.add_argument("--epochs", type=epochs, default=1, help="passes over the training pairs")
    t.add_argument("--batch-size", type=batch, default=None, help="pairs per step (default: the model's own, 32)")
    t.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: the model's own, 0.001)")
    t.add_argument("--schedule", choices=list(SCHEDULES), default="constant",
                   help="learning-rate schedule (a rate set by hand while it runs rescales the rest of it)")
    t.add_argument("--warmup", type=every, default=0, metavar="STEPS", help="linear warm-up steps (onecycle: its rise)")
    t.add_argument("--decay-to", type=_fraction, default=0.01, metavar="F",
                   help="cosine, onecycle: the final rate as a fraction of --lr")
    t.add_argument("--step-every", type=every, default=0, metavar="STEPS",
                   help="step: steps between two decays (default: one epoch)")
    t.add_argument("--gamma", type=_fraction, default=0.5, help="step: the factor of each decay")
    t.add_argument("--subset", type=pairs, default=None,
                   help="train on the first N pairs only (default: all of course:DIR; sample and images:DIR "
                        "generate 20000)")
    t.add_argument("--n-val", type=pairs, default=1000, help="validation pairs")
    t.add_argument("--fresh", action="store_true",
                   help="new training pairs every epoch after the first: new noise on the same clean crops, new "
                        "dead-leaves images for leaves; drawn on one more CPU core while the previous epoch trains "
                        "(not for course data)")
    t.add_argument("--float-targets", action="store_true",
                   help="training targets in float: their noise neither rounded to 8 bits nor clipped to [0, 255], "
                        "as in the Noise2Noise paper (unbiased targets for zero-mean noise such as gaussian; inputs "
                        "stay 8-bit like test images, and are never swapped with targets); not for course data")
    t.add_argument("--crop", type=int, default=CROP, metavar="PX",
                   help=f"side of the generated training crops, a multiple of 16 up to {MAX_CROP} (default {CROP}, the "
                        "course's; "
                        "validation crops stay 32): larger crops teach a whole-photo model its full context")
    t.add_argument("--eval-every", type=_eval_every, default="auto", metavar="N|auto",
                   help="evaluate every N steps (0: epoch ends only); auto: about 20 evaluations per run and at least "
                        "one a minute")
    t.add_argument("--seed", type=seed, default=0, help="random seed (data, noise, initial weights)")
    t.add_argument("--device", choices=["cpu", "cuda"], default=None, help=_DEVICE)
    _add_threads(t)
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--headless", action="store_true",
                      help="no dashboard: train in the foreground and print progress (viewers may attach)")
    t.add_argument("--json", action="store_true", help="one JSON event per line (implies --headless)")
    mode.add_argument("--detach", action="store_true",
                      help="train in the background: print the run id and return (n2n-tui attach to watch)")
    mode.add_argument("--in-process", action="store_true",
                      help="train inside the dashboard's own process: the run ends when the window closes")
    t.add_argument("--resume", metavar="RUN", default=None, help="continue a stopped or crashed run")
    t.add_argument("--export-to", metavar="PATH", type=_path, default=None,
                   help="where the best weights are exported: by the dashboard's save key (default: "
                        "Miniproject_<engine>/bestmodel.pth), and at the end of a --headless run (only when given; "
                        "never over better weights without --force)")
    t.add_argument("--force", action="store_true", help="let --export-to replace weights that measure better")
    _add_marks(t)
    _add_runs_dir(t)

    a = sub.add_parser("attach", help="the dashboard of a live run (or --json: its events as JSON lines)")
    a.add_argument("run", metavar="RUN", nargs="?", default=None,
                   help="run id, unique id prefix, or 'last' (default: the newest live run)")
    a.add_argument("--json", action="store_true", help="follow the run's events as JSON lines, no dashboard")
    a.add_argument("--export-to", metavar="PATH", type=_path, default=None,
                   help="target of the dashboard's save key (default: Miniproject_<engine>/bestmodel.pth)")
    _add_marks(a)
    _add_runs_dir(a)

    c = sub.add_parser("ctl", help="steer a live run: pause, resume, stop, lr VALUE, set NAME VALUE, save [PATH], "
                                   "status")
    c.add_argument("run", metavar="RUN", help="run id, unique id prefix, or 'last'")
    c.add_argument("action", metavar="COMMAND", choices=["pause", "resume", "stop", "lr", "set", "save", "status"],
                   help="pause | resume | stop | lr VALUE | set NAME VALUE | save [PATH] | status")
    c.add_argument("values", nargs="*", default=[], metavar="ARG",
                   help="lr: the new rate; set: a live hyper-parameter's name and value; save: the target path")
    c.add_argument("--force", action="store_true", help="save: replace a target that measures better")
    c.add_argument("--json", action="store_true",
                   help="print the runner's answer as JSON, for scripts (status: every field it reports)")
    _add_runs_dir(c)

    w = sub.add_parser("serve", help="the app in a browser (textual-serve); loopback only unless --host")
    w.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; anything else prints a warning: plain HTTP)")
    w.add_argument("--port", type=_int_type(1, 65535, "a port number"), default=8000, help="port to listen on")
    w.add_argument("--token-file", metavar="FILE", default=None,
                   help="take the page's token from this file's first line (default: $N2N_SERVE_TOKEN, else a new "
                        "random token each start; printed in the URL to open)")
    _add_runs_dir(w)

    sw = sub.add_parser("sweep", help="search hyper-parameters with Ray Tune (a TOML spec), watched live")
    sw.add_argument("spec", metavar="SPEC.toml", nargs="?", default=None, help="the sweep's spec")
    sw.add_argument("--resume", metavar="SWEEP", default=None, help="continue a stopped or crashed sweep")
    sw.add_argument("--address", default=None,
                    help="an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray started for the sweep)")
    sw.add_argument("--headless", action="store_true", help="no sweep view: print progress")
    sw.add_argument("--json", action="store_true", help="one JSON event per line, with the trial id (no view)")
    _add_runs_dir(sw)

    sws = sub.add_parser("sweeps", help="past and running sweeps")
    sws.add_argument("--json", action="store_true", help="one JSON array of the sweeps, for scripts")
    _add_runs_dir(sws)

    tg = sub.add_parser("tag", help="add a note to a run (shown wherever runs are listed; '' clears it)")
    tg.add_argument("run", metavar="RUN", help="run id, unique id prefix, or 'last'")
    tg.add_argument("text", metavar="TEXT", help="the note ('' clears it)")
    _add_runs_dir(tg)

    r = sub.add_parser("runs", help="past and running sessions")
    r.add_argument("--json", action="store_true", help="one JSON array of the runs, for scripts")
    _add_runs_dir(r)

    s = sub.add_parser("show", help="one session: config, metric series, events")
    s.add_argument("run", metavar="RUN", help="run id, unique id prefix, or 'last'")
    s.add_argument("--json", action="store_true", help="the run as one JSON object, for scripts")
    _add_runs_dir(s)

    x = sub.add_parser("export", help="write a run's best weights as a grader-ready bestmodel.pth, verified")
    x.add_argument("run", metavar="RUN", help="run id, unique id prefix, or 'last'")
    x.add_argument("--to", metavar="PATH", type=_path, default=None,
                   help="target file (default: Miniproject_<engine>/bestmodel.pth)")
    x.add_argument("--force", action="store_true", help="replace a target that measures better, or is not weights")
    _add_runs_dir(x)

    e = sub.add_parser("eval", help="PSNR of a checkpoint on a data source")
    e.add_argument("--engine", type=_engine, required=True, help="1: Miniproject_1 (PyTorch), 2: Miniproject_2")
    e.add_argument("--weights", metavar="PATH|RUN", type=_path, default=None,
                   help="a checkpoint file or a stored run (default: the shipped bestmodel.pth)")
    e.add_argument("--data", default=None, help=_DATA_HELP)
    e.add_argument("--noise", default="mix", type=_noise, metavar="SPEC", help="noise for generated data")
    e.add_argument("--n-val", type=pairs, default=None,
                   help="validation pairs to use (default: all of course:DIR; 1000 generated otherwise)")
    e.add_argument("--seed", type=seed, default=0, help="random seed of generated data and its noise")
    e.add_argument("--device", choices=["cpu", "cuda"], default=None, help=_DEVICE)
    _add_threads(e)
    e.add_argument("--json", action="store_true", help="the result as one JSON object")
    e.add_argument("--full", action="store_true",
                   help="whole photographs of images:DIR or pypi (or sample's held-out ones), not crops; PSNR and SSIM "
                        "each")
    e.add_argument("--baseline", choices=["bm3d"], default=None,
                   help="with --full: also measure BM3D on the same noisy images (optional extra: n2n-tui[bm3d])")
    e.add_argument("--self-ensemble", action="store_true", help=_ENSEMBLE + " (with --full)")
    _add_runs_dir(e)

    n = sub.add_parser("denoise", help="denoise photographs of any size (tiles), optionally adding noise first")
    n.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or TIFF files")
    n.add_argument("-o", "--out", required=True, metavar="OUT", type=_path, help="a file for one image, or a folder")
    n.add_argument("--engine", type=_engine, default=None, help="1 or 2 (default: the run's engine, else 1)")
    n.add_argument("--weights", metavar="PATH|RUN", type=_path, default=None,
                   help="a checkpoint file or a stored run (default: the shipped bestmodel.pth)")
    n.add_argument("--add-noise", type=_noise, default=None, metavar="SPEC",
                   help="corrupt the clean input first (e.g. gaussian:25) and report PSNR against it")
    n.add_argument("--seed", type=seed, default=0, help="seed of --add-noise")
    n.add_argument("--self-ensemble", action="store_true", help=_ENSEMBLE)
    n.add_argument("--device", choices=["cpu", "cuda"], default=None, help=_DEVICE)
    _add_threads(n)
    n.add_argument("--force", action="store_true", help="replace existing output files")
    n.add_argument("--allow-large", action="store_true",
                   help="denoise images over 40 megapixels too (minutes each on a CPU)")
    n.add_argument("--json", action="store_true", help="one JSON object per image")
    _add_runs_dir(n)

    rp = sub.add_parser("report", help="figures (PNG, PDF), metrics.csv and summary.md of runs, for a report")
    rp.add_argument("runs", nargs="+", metavar="RUN", help="run ids, unique prefixes or 'last'; several overlay")
    rp.add_argument("--out", required=True, metavar="DIR", type=_path, help="folder for the figures and tables")
    rp.add_argument("--step", type=every, default=None,
                    help="the evaluation whose samples to show (default: the best one)")
    rp.add_argument("--force", action="store_true", help="replace existing files in DIR")
    _add_marks(rp)
    _add_runs_dir(rp)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", parser_class=_Parser, required=True)
    m = dsub.add_parser("make", help="write train_data.pkl / val_data.pkl in the course's exact format")
    m.add_argument("--out", required=True, metavar="DIR", type=_path,
                   help="folder for train_data.pkl and val_data.pkl")
    m.add_argument("--force", action="store_true", help="replace existing train_data.pkl / val_data.pkl")
    m.add_argument("--source", default="sample", metavar="SPEC",
                   help="sample | leaves | pypi | images:DIR | course:DIR, or a mix such as sample+leaves")
    m.add_argument("--noise", default="mix", type=_noise, metavar="SPEC", help="noise of the generated pairs")
    m.add_argument("--n-train", type=pairs, default=50000, help="training pairs")
    m.add_argument("--n-val", type=pairs, default=1000, help="validation pairs")
    m.add_argument("--seed", type=seed, default=0, help="random seed of the crops and their noise")
    _add_threads(m)
    return p
