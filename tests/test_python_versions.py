"""The Python versions pyproject.toml declares are the ones the code runs on: every module parses at the declared
floor's grammar, the standard-library modules it imports exist there, and this interpreter (CI's) is in range."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "sessions", "tui", "Miniproject_1", "Miniproject_2", "scripts", "benchmarks")
NEWER_STDLIB = {"tomllib": (3, 11), "wsgiref.types": (3, 11)}  # stdlib modules added after 3.10


def _floor() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip())
    assert m, f"requires-python {spec!r}: expected a plain >=X.Y floor"
    return int(m.group(1)), int(m.group(2))


def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_this_interpreter_is_in_the_declared_range():
    assert sys.version_info[:2] >= _floor()


def test_every_module_parses_and_imports_what_the_declared_floor_has():
    floor = _floor()
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path), feature_version=floor)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                needs = NEWER_STDLIB.get(name)
                assert needs is None or needs <= floor, f"{path}: imports {name} (Python {needs}), floor {floor}"
