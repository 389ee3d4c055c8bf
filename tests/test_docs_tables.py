"""The generated tables of README.md and docs/ (scripts/docs_tables.py) are current."""
import argparse

from experiment.flags import build_parser
from scripts import docs_tables
from scripts.docs_tables import TABLES, WRITE_COMMAND, blocks, flag_table, pages, rewrite, stale, unknown_names


def shown_names():
    return {name for page in pages() for name, _ in blocks(page.read_text())}


def test_the_flag_and_method_tables_are_generated_blocks():
    assert {"flags", "methods"} <= shown_names(), \
        "README.md or docs/ must show the flag and method tables between <!-- BEGIN GENERATED: flags|methods --> markers"


def test_every_generated_block_names_a_table():
    assert unknown_names() == [], f"known tables: {', '.join(TABLES)}"


def test_every_generated_block_is_current():
    outdated = [f"{page.relative_to(docs_tables.REPOSITORY)}: {name}" for page, name in stale()]
    assert outdated == [], f"stale generated tables {outdated}; run {WRITE_COMMAND}"


def test_the_flag_table_has_every_flag_of_the_parser():
    table = flag_table()
    flags = [o for a in build_parser()._actions if not isinstance(a, argparse._HelpAction) for o in a.option_strings]
    assert {"--dtype", "--track-au", "--cagrad-c", "--no-augment"} <= set(flags)
    assert [f for f in flags if f"`{f}`" not in table] == []


def test_write_replaces_a_stale_block_and_check_then_passes(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "README.md").write_text("intro\n")
    page = tmp_path / "docs" / "sub" / "page.md"
    page.write_text("before\n<!-- BEGIN GENERATED: optimizers -->\n| old |\n<!-- END GENERATED: optimizers -->\nafter\n")
    assert stale(tmp_path) == [(page, "optimizers")]
    page.write_text(rewrite(page.read_text(), {"optimizers": TABLES["optimizers"]()}))
    assert stale(tmp_path) == []
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n") and "| `adam_with_adatask` |" in text


def test_a_block_of_an_unknown_table_is_named(tmp_path):
    (tmp_path / "README.md").write_text("<!-- BEGIN GENERATED: flagz -->\n<!-- END GENERATED: flagz -->\n")
    assert unknown_names(tmp_path) == [(tmp_path / "README.md", "flagz")]
