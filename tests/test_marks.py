"""Reference marks on the PSNR plots: from --mark and from RUNS/marks.toml, bad ones refused in one line."""
import pytest

from sessions.marks import Mark, MarkError, load_marks, parse_mark
from tui.cli import main


def test_a_mark_from_the_command_line_and_the_runs_folder(tmp_path):
    (tmp_path / "marks.toml").write_text('[[mark]]\npsnr = 27.5\nlabel = "the   course\'s 8-layer net"\n')
    assert load_marks(tmp_path, ["24:plain CNN", "30"]) == [
        Mark(24.0, "plain CNN"), Mark(27.5, "the course's 8-layer net"), Mark(30.0, "")]
    assert load_marks(tmp_path / "none") == []


@pytest.mark.parametrize("text, why", [("fast:x", "expected PSNR:LABEL"), ("nan:x", "between 0 and 100"),
                                       ("-3", "between 0 and 100")])
def test_a_bad_mark_is_one_line(text, why):
    with pytest.raises(MarkError, match=why):
        parse_mark(text)


def test_a_bad_marks_file_names_itself(tmp_path, capsys):
    (tmp_path / "marks.toml").write_text("[[mark]]\npsnr = 'high'\n")
    with pytest.raises(MarkError, match=r"marks.toml, mark 1: the PSNR must be a number"):
        load_marks(tmp_path)
    (tmp_path / "marks.toml").write_text("[[mark]\n")
    with pytest.raises(MarkError, match="not a readable marks file"):
        load_marks(tmp_path)


def test_report_refuses_a_bad_mark_with_exit_2(tmp_path, capsys):
    assert main(["report", "last", "--out", str(tmp_path / "out"), "--mark", "x", "--runs-dir", str(tmp_path)]) == 2
    assert "n2n-tui: error:" in capsys.readouterr().err
