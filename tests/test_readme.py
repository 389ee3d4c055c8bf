"""The README: at most 250 lines, its sections in the order a newcomer needs them, and its
"Use AdaTask in your own model" example runs exactly as written."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MAX_LINES = 250
# The README's second-level sections, in order (issue 27); everything else lives in docs/.
SECTIONS = ("What the demo shows", "Reproduce a paper", "Fair comparisons", "Use AdaTask in your own model",
            "Documentation", "Citing", "Licence")
# What a newcomer must find before this line: the demo, reproducing a paper, adding a method.
FIRST_LINES = 60


def readme_example():
    section = README.read_text().split("## Use AdaTask in your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


IMPORT = "from optim import AdamWithAdaTask as AdaTask"


@pytest.mark.parametrize("base", ["AdamWithAdaTask", "RMSpropWithAdaTask", "AdagradWithAdaTask"])
@pytest.mark.usefixtures("seeded_and_restored")
def test_readme_example_runs_verbatim_for_every_base_with_one_changed_line(base):
    code = readme_example()
    assert IMPORT in code
    namespace = {}
    example = code.replace(IMPORT, IMPORT.replace("AdamWithAdaTask", base))
    exec(compile(example, str(README), "exec"), namespace)  # noqa: S102 -- running the README's example is the test
    opt, trunk = namespace["opt"], namespace["trunk"]
    assert type(opt).__name__ == base
    # it really trained with per-task moments: two tasks' states on every shared parameter
    for p in trunk.parameters():
        assert all(opt.state[p][name].shape == (2, *p.shape) for name in opt.state_names)
        assert int(opt.state[p]["step"]) == 20


def test_readme_demo_table_is_the_committed_one():
    committed = [line for line in (README.parent / "results" / "demo.md").read_text().splitlines()
                 if line.startswith("|")]
    assert "\n".join(committed) in README.read_text()


def second_level_headings(text):
    fenced, found = False, []
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            found.append(line[3:].strip())
    return found


def test_the_readme_is_short_and_its_sections_come_in_order():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"README.md has {len(text.splitlines())} lines; move detail to docs/"
    assert second_level_headings(text) == list(SECTIONS)


def test_the_first_lines_say_how_to_run_the_demo_reproduce_a_paper_and_add_a_method():
    first = "\n".join(README.read_text().splitlines()[:FIRST_LINES])
    assert ".venv/bin/python -m scripts.demo" in first
    assert "(#reproduce-a-paper)" in first
    assert "docs/design.md#how-to-add-a-weighting-method" in first


def test_every_docs_page_is_in_the_readmes_table_of_contents_or_the_site_only():
    """A page nobody links to is a page nobody reads: each docs/*.md is named in the README's
    Documentation section (the site's index and the API pages are the site's own)."""
    section = README.read_text().split("## Documentation", 1)[1].split("\n## ", 1)[0]
    docs = README.parent / "docs"
    pages = {path.relative_to(docs).as_posix() for path in docs.glob("*.md")} - {"index.md"}
    assert not [page for page in sorted(pages) if f"(docs/{page})" not in section]


def test_the_sites_index_lists_the_pages_as_the_readme_does():
    """docs/index.md, the site's home, repeats the README's table of contents (links relative to
    docs/); the two lists may not drift apart."""
    section = README.read_text().split("## Documentation", 1)[1].split("\n## ", 1)[0]
    readme_items = [line.replace("](docs/", "](") for line in section.splitlines() if line.startswith("- [")]
    index = (README.parent / "docs" / "index.md").read_text()
    index_items = [line for line in index.splitlines() if line.startswith("- [")]
    assert index_items[:len(readme_items)] == readme_items
