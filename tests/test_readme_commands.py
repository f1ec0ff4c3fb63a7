"""Every ``n2n-tui`` command line README.md quotes keeps working: scripts are written from the README. Each command
of its shell blocks, and each inline ``n2n-tui ...`` span that is a command rather than a syntax summary, goes
through the real parser (and, for ``train``, the combination checks of ``train_cmd``)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tui.parser import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands() -> list[str]:
    out = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", README, re.S):
        if lang != "sh":
            continue
        for line in body.splitlines():
            line = line.split(" #", 1)[0].split("|", 1)[0]  # comments and pipes
            for m in re.finditer(r"n2n-tui\b([^)&;]*)", line):
                out.append("n2n-tui" + m.group(1).rstrip())
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    for span in re.findall(r"`(n2n-tui(?: [^`]*)?)`", prose):
        if not re.search(r"[\[|]|\.\.\.", span):  # "[--to PATH]", "a|b", "RUN..." are syntax, not a command
            out.append(span)
    return sorted(set(out))


COMMANDS = _commands()


def test_the_readme_quotes_commands():
    assert len(COMMANDS) > 20 and "n2n-tui train --headless --json" in COMMANDS


@pytest.mark.parametrize("line", COMMANDS)
def test_each_command_the_readme_quotes_is_accepted(line, capsys):
    argv = [a.replace("$RUN", "RUN") for a in shlex.split(line)[1:]]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        err = capsys.readouterr().err
        # a span that quotes only some options of a command (`n2n-tui denoise --add-noise gaussian:25`) lacks the
        # command's required arguments; anything else is a form the README shows and the parser refuses
        assert e.code == 0 or "the following arguments are required" in err, f"{line}: {err}"
        return
    if args.command == "train":
        from tui.commands.train_cmd import check_modes

        check_modes(args)  # the combinations train itself refuses
