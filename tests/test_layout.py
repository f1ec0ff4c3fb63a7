"""The shape of the code, as a reader checks it with grep and an import graph: imports flow one way with no circle,
no module holds two jobs' worth of lines, viewers call the run handle's contract instead of probing, every handle and
both Models have the whole of their contract, and the linter is clean."""
from __future__ import annotations

import ast
import inspect
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "sessions", "tui", "Miniproject_1", "Miniproject_2")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, wherever the import statement sits (a lazy import is still an edge)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_in_the_project():
    mods = _modules()
    graph = {name: _imports(name, path, set(mods)) for name, path in mods.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_flow_down_between_packages():
    """engine imports neither sessions nor tui; sessions does not import tui; the Miniprojects import nothing of
    the rest of the repository (each is handed in on its own)."""
    mods = _modules()
    below = {"engine": {"sessions", "tui"}, "sessions": {"tui"},
             "Miniproject_1": {"engine", "sessions", "tui", "Miniproject_2"},
             "Miniproject_2": {"engine", "sessions", "tui", "Miniproject_1"}}
    wrong = [(name, target) for name, path in mods.items() for target in _imports(name, path, set(mods))
             if target.split(".")[0] in below.get(name.split(".")[0], set())]
    assert wrong == []


def test_no_module_over_450_lines_outside_tests():
    files = [p for d in (*PACKAGES, "benchmarks", "scripts") for p in (ROOT / d).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


HANDLE_NAMES = ("trainer", "handle", "run", "t", "current", "old")  # what viewers call a run handle


def _getattr_probes(tree: ast.AST) -> list[str]:
    """``getattr(handle, name, default)`` calls: a viewer asking a run handle whether it has something."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) == 3 and ast.unparse(node.args[0]).rpartition(".")[2] in HANDLE_NAMES:
            out.append(ast.unparse(node))
    return out


def test_viewers_call_the_run_handle_instead_of_probing_it():
    probes = {str(p.relative_to(ROOT)): found for p in (ROOT / "tui").rglob("*.py")
              if (found := _getattr_probes(ast.parse(p.read_text())))}
    assert probes == {}


def test_the_probe_finder_finds_a_probe():
    code = 'getattr(self.trainer, "remote", False); getattr(args, "x", None); getattr(app.trainer, "state", None)'
    assert _getattr_probes(ast.parse(code)) == ["getattr(self.trainer, 'remote', False)",
                                                "getattr(app.trainer, 'state', None)"]


def _members(protocol) -> set[str]:
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items()
              if not n.startswith("_") and (callable(v) or isinstance(v, (property, classmethod, staticmethod)))}
    return names


def _defined(cls) -> set[str]:
    """Names a class offers: its (inherited) attributes, and what its methods assign to ``self``."""
    names = {n for klass in cls.__mro__ for n in vars(klass)}
    for klass in cls.__mro__[:-1]:  # not object
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(klass)))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            for t in targets:
                for el in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    if isinstance(el, ast.Attribute) and isinstance(el.value, ast.Name) and el.value.id == "self":
                        names.add(el.attr)
    return names


def test_every_run_handle_has_the_whole_contract():
    from sessions.handle import LocalRun, RunHandle
    from sessions.remote import RemoteRun
    from sessions.sweep import TrialRun

    members = _members(RunHandle)
    assert {"run_id", "lives_on", "state", "set_hyperparameter", "export", "latest_patches", "close"} <= members
    # RemoteRun copies the hello's fields in a loop: those are named in its source
    hello = {"device", "state", "message", "step", "epoch", "total_steps", "lr", "best_psnr", "best_step", "pid"}
    from fakes import FakeTrainer

    for cls in (LocalRun, RemoteRun, TrialRun, FakeTrainer):
        missing = members - _defined(cls) - (hello if cls is RemoteRun else set())
        assert missing == set(), f"{cls.__name__} lacks {sorted(missing)}"


def test_both_models_have_what_the_engine_asks_of_them():
    from engine.models import EngineModel, new_model

    members = _members(EngineModel)
    assert {"train_step", "check_hyperparameter", "state_dict", "HYPERPARAMETERS"} <= members
    for engine in (1, 2):
        model = new_model(engine, "cpu")
        assert {m for m in members if not hasattr(model, m)} == set(), f"engine {engine}"


@pytest.mark.skipif(shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                    capture_output=True).returncode != 0, reason="ruff is not installed (pip install -e '.[dev]')")
def test_the_linter_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_the_readme_stays_a_newcomers_guide_with_the_lab_notebook_beside_it():
    """Recipes and benchmark tables live in docs/; the README stays short enough to read."""
    assert len((ROOT / "README.md").read_text().splitlines()) < 330
    for page in ("training.md", "benchmarks.md"):
        assert (ROOT / "docs" / page).is_file(), page
