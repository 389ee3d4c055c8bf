"""The repository says under which licence it may be used and how to cite it."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_licence_is_mit_held_by_the_contributors():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} the AdaTask-on-CityScapes contributors$", text, re.MULTILINE)


def test_the_citation_file_has_the_fields_citation_cff_requires():
    text = (REPO / "CITATION.cff").read_text()
    for field in ("cff-version: 1.2.0", "message: ", "title: ", "authors:", "license: MIT"):
        assert re.search(rf"^{re.escape(field)}", text, re.MULTILINE), field
    assert "AdaTask: A Task-aware Adaptive Learning Rate Approach to Multi-task Learning" in text
    assert "2211.15055" in text
