"""runfolder/exit_codes.py: one table of exit codes, whose copies are docs/design.md's and docs/failures.md's."""
import signal
from pathlib import Path

from runfolder import exit_codes

DESIGN_MD = Path(__file__).resolve().parent.parent / "docs" / "design.md"
FAILURES_MD = Path(__file__).resolve().parent.parent / "docs" / "failures.md"


def test_the_design_documents_and_the_failures_pages_tables_are_the_generated_one():
    assert exit_codes.markdown_table() in DESIGN_MD.read_text()
    assert exit_codes.markdown_table() in FAILURES_MD.read_text()


def test_the_codes_and_their_order():
    assert list(exit_codes.MEANINGS) == [0, 1, 2, 3, 74, 75, 130, 140, 143]
    assert (exit_codes.EXIT_WRITE, exit_codes.EXIT_BUSY, exit_codes.EXIT_INTERRUPTED) == (74, 75, 130)
    assert [exit_codes.stopped_by(s) for s in exit_codes.STOP_SIGNALS] == [130, 140, 143]
    assert exit_codes.stopped_by(signal.SIGKILL) == 137


def test_the_table_has_one_row_per_code():
    lines = exit_codes.markdown_table().splitlines()
    assert lines[:2] == ["| code | meaning |", "|---|---|"]
    assert [int(line.split("|")[1]) for line in lines[2:]] == list(exit_codes.MEANINGS)
    assert lines[7] == "| 75 | " + exit_codes.MEANINGS[75] + " |"
