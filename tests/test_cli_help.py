"""What a newcomer reads first: every option's ``--help`` line says what it does and its default where it has one
(never ``default: None``), and ``n2n-tui --version`` names the version."""
from __future__ import annotations

import argparse
import inspect
import re
import tomllib
from pathlib import Path

import pytest

from tui.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _parsers(parser: argparse.ArgumentParser, name: str = "n2n-tui"):
    """The parser and each sub-command's (``data make`` too), with the command line that reaches it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def _help_lines(parser, monkeypatch) -> dict[str, str]:
    """Option -> its help as printed, unwrapped (a wide terminal)."""
    monkeypatch.setenv("COLUMNS", "1000")
    out = {}
    lines = parser.format_help().splitlines() + [""]
    for line, after in zip(lines, lines[1:]):
        # "  -o OUT, --out OUT   a file for one image, or a folder"; a long invocation has its help on the next line
        m = re.match(r"^  (-.+?)(?:\s{2,}(.*))?$", line)
        if m:
            text = m.group(2) if m.group(2) else (after.strip() if after.startswith("    ") else "")
            for option in re.findall(r"(?:^|, )(--?[\w-]+)", m.group(1)):
                out[option] = text
    return out


def test_every_option_says_what_it_does_and_its_default(monkeypatch):
    checked = 0
    for name, parser in _parsers(build_parser()):
        lines = _help_lines(parser, monkeypatch)
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            option = action.option_strings[-1]
            text = lines.get(option)
            assert text, f"{name} {option}: no help"
            assert not re.search(r"default: (None|False|True|\[\])", text), f"{name} {option}: {text}"
            default = action.default
            worth_saying = not (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                                or default == [])
            if worth_saying:
                assert "default" in text, f"{name} {option}: {text!r} hides its default {default!r}"
            checked += 1
    assert checked > 80


def test_defaults_are_the_ones_used(monkeypatch):
    """Spot checks: the values printed are the parser's own, and "the model's own" ones are the Models' defaults."""
    from Miniproject_1.model import Model as Model1
    from Miniproject_2.model import Model as Model2

    parser = build_parser()
    train = dict(_parsers(parser))["n2n-tui train"]
    lines = _help_lines(train, monkeypatch)
    assert lines["--epochs"].endswith("(default: 1)") and lines["--n-val"].endswith("(default: 1000)")
    assert lines["--warmup"].endswith("(default: 0)") and lines["--schedule"].endswith("(default: constant)")
    assert lines["--noise"].endswith("(default: mix)") and lines["--decay-to"].endswith("(default: 0.01)")
    for model in (Model1, Model2):
        sig = inspect.signature(model.__init__).parameters
        assert f"(default: the model's own, {sig['batch_size'].default})" in lines["--batch-size"]
        assert f"(default: the model's own, {sig['lr'].default:g})" in lines["--lr"]
        assert f"(default: the model's own, {sig['loss'].default})" in lines["--loss"]
    make = _help_lines(dict(_parsers(parser))["n2n-tui data make"], monkeypatch)
    assert make["--n-train"].endswith("(default: 50000)")
    serve = _help_lines(dict(_parsers(parser))["n2n-tui serve"], monkeypatch)
    assert serve["--port"].endswith("(default: 8000)")


def test_a_default_with_a_percent_sign_prints_as_it_is(monkeypatch):
    from tui.parser import _Parser

    monkeypatch.setenv("COLUMNS", "200")
    p = _Parser(prog="x")
    p.add_argument("--where", default="runs-100%", help="a folder")
    assert "a folder (default: runs-100%)" in p.format_help()


def test_version_prints_the_installed_version_and_exits_0(capsys):
    from importlib import metadata

    from tui.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    try:
        installed = metadata.version("n2n-tui")
    except metadata.PackageNotFoundError:
        installed = None
    out = capsys.readouterr().out
    assert out.startswith("n2n-tui ") and out.count("\n") == 1
    if installed:
        assert out == f"n2n-tui {installed}\n"


def test_version_without_an_installed_distribution_reads_pyproject(monkeypatch):
    from importlib import metadata

    from tui.parser import package_version

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert package_version() == f"{version} (source tree, not installed)"
