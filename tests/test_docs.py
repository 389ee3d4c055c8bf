"""Every reference to a document in the repository points at a file and heading that exist.

Code cites the project's documents as `docs/<name>.md`, optionally with a section:
`docs/methods.md, "Heading text"`, where the heading text is that of a markdown heading (any
level) of the file. The team's working documents outside the repository must not be cited:
a newcomer has no way to open them.
"""
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCANNED_SUFFIXES = (".py", ".sh", ".md", ".toml")
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()  # holds bad references on purpose

# docs/<name>.md, then optionally `, "Heading"`; the heading may follow on the next line, also
# after a comment's "#". A path such as other/docs/x.md is not a reference to this repository's docs/.
REFERENCE = re.compile(r'(?<![\w/.-])docs/([\w.-]+?\.md)(?:,\s*(?:#\s*)?"([^"\n]+)")?')
# Citations of the documents outside the repository: pattern → what it is.
OUTSIDE = (
    (re.compile(r"\bMETHODS\s*§"), "a section of the outside methods document"),
    (re.compile(r"\bMETHODS\.md\b"), "the outside methods document"),
    (re.compile(r"\bDESIGN\s*§"), "a section of the outside design document"),
    (re.compile(r"\bDESIGN\b"), "the outside design document"),  # also DESIGN.md, DESIGN's …
    (re.compile(r"\bCLUSTER\.md\b"), "the outside cluster facts"),
    (re.compile(r"\.\./shared/"), "a file outside the repository (../shared/)"),
)
INSTEAD = "cite docs/design.md or docs/methods.md instead"
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def headings(text):
    """The text of every markdown heading (ATX, any level), code blocks left out."""
    found, fenced = set(), False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            found.add(match.group(1).strip())
    return found


def bad_references(text, where, docs_dir):
    """'where:line: why' for each reference in `text` to a missing document or heading under
    `docs_dir`, and for each citation of an outside document."""
    found = []  # (offset, why)
    for match in REFERENCE.finditer(text):
        name, heading = match.group(1), match.group(2)
        path = Path(docs_dir) / name
        if not path.is_file():
            found.append((match.start(), f"docs/{name} does not exist"))
        elif heading is not None and heading.strip() not in headings(path.read_text(encoding="utf-8")):
            found.append((match.start(), f"docs/{name} has no heading {heading!r}"))
    for pattern, what in OUTSIDE:
        for match in pattern.finditer(text):
            found.append((match.start(), f"cites {what} ({match.group(0)!r}); {INSTEAD}"))
    return [f"{where}:{text.count(chr(10), 0, offset) + 1}: {why}" for offset, why in sorted(found)]


def repository_files():
    """Tracked files, and new files that git does not ignore, with the scanned suffixes."""
    listed = set()
    for extra in ([], ["--others", "--exclude-standard"]):
        out = subprocess.run(["git", "ls-files", *extra], cwd=REPO, capture_output=True, text=True, check=True)
        listed.update(out.stdout.splitlines())
    return sorted(name for name in listed
                  if name.endswith(SCANNED_SUFFIXES) and name != THIS_FILE and (REPO / name).is_file())


def test_every_document_reference_resolves():
    files = repository_files()
    assert "README.md" in files or not (REPO / "README.md").exists()
    problems = []
    for name in files:
        problems += bad_references((REPO / name).read_text(encoding="utf-8", errors="replace"), name, REPO / "docs")
    assert not problems, f"{len(problems)} bad document reference(s):\n" + "\n".join(problems)


def test_the_documents_the_code_cites_exist():
    for name in ("design.md", "methods.md"):
        assert (REPO / "docs" / name).is_file(), f"docs/{name} is missing"


@pytest.fixture
def fake_docs(tmp_path):
    (tmp_path / "methods.md").write_text("# Methods\n\n## Tasks\n\n```bash\n# Not a heading\n```\n\n### Depth ###\n")
    return tmp_path


def test_scanner_accepts_good_references(fake_docs):
    text = ('"""Depth (docs/methods.md, "Depth"); see docs/methods.md and docs/methods.md, "Tasks".\n'
            '# wrapped: docs/methods.md,\n# "Methods"\n'
            'other/docs/missing.md is another repository\'s file. METHODS = ("adam",)\n')
    assert bad_references(text, "ok.py", fake_docs) == []


def test_scanner_reports_each_bad_reference_with_its_line(fake_docs):
    source = [
        '"""Depth (docs/methods.md, "Losses").',        # 1: no such heading
        "See docs/design.md.",                          # 2: no such file
        "Δm as in METHODS §2.",                         # 3: outside document
        "DESIGN's data flow, DESIGN.md and DESIGN §3",  # 4: three outside citations
        "in ../shared/METHODS.md and CLUSTER.md",       # 5: three
        'a code block is no heading: docs/methods.md, "Not a heading"',  # 6
    ]
    problems = bad_references("\n".join(source), "bad.py", fake_docs)
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines.count(1) == 1 and "no heading 'Losses'" in problems[0]
    assert lines.count(2) == 1 and any("docs/design.md does not exist" in p for p in problems)
    assert lines.count(3) == 1
    assert lines.count(4) >= 3
    assert lines.count(5) >= 3
    assert lines.count(6) == 1
    assert all(p.startswith("bad.py:") for p in problems)
