"""The tables of README.md and docs/**/*.md that are generated from the code (issue 27).

A generated block is the lines between

    <!-- BEGIN GENERATED: <name> -->
    <!-- END GENERATED: <name> -->

where <name> is a key of TABLES: `flags` (every flag of main_cityscapes.py, from
experiment/flags.py's parser), `methods` (the --weighting registry with the goldens' column),
`optimizers` (the --method registry), `tasks` and `datasets` (their registries).

    .venv/bin/python -m scripts.docs_tables --write    # rewrite every block
    .venv/bin/python -m scripts.docs_tables --check    # exit 1 naming the stale blocks

tests/test_docs_tables.py fails when a block is stale or names an unknown table.
"""
import argparse
import re
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- END GENERATED: (?P=name) -->$",
                   re.DOTALL | re.MULTILINE)
WRITE_COMMAND = ".venv/bin/python -m scripts.docs_tables --write"

# Defaults that depend on the machine the parser runs on: the table shows the rule, so that
# it is the same everywhere.
MACHINE_DEFAULTS = {"num_workers": "min(4, cores/2)"}


def pages(root=REPOSITORY):
    """README.md and every Markdown page under docs/, in a fixed order."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _cell(text):
    """One table cell: one line, its pipes escaped, and `<name>` kept as text rather than read as HTML."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def _default(action):
    if action.dest in MACHINE_DEFAULTS:
        return MACHINE_DEFAULTS[action.dest]
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if action.default else "off"
    if action.nargs == 0:
        return "off"
    if action.default is None:
        return "–"
    if action.default == "":
        return "empty"
    if isinstance(action.default, list):
        return f"`{' '.join(map(str, action.default))}`"
    return f"`{action.default}`"


def _meaning(action):
    text = (action.help or "") % {"default": action.default, "prog": "main_cityscapes.py"}
    if action.choices and len(action.choices) <= 8:
        text += f"; one of {', '.join(f'`{c}`' for c in action.choices)}"
    elif action.choices:
        text += f"; {len(action.choices)} choices (`--help` lists them)"
    return _cell(text)


def flag_table():
    """Every flag of main_cityscapes.py, one table per group of --help, in --help's order."""
    from experiment.flags import build_parser
    out = []
    for group in build_parser()._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.dest != "help"]
        if not actions:
            continue
        if out:
            out.append("")
        out += [f"**{group.title}**" + (f": {_cell(group.description)}" if group.description else ""), "",
                "| flag | default | meaning |", "|---|---|---|"]
        for action in actions:
            flags = " / ".join(f"`{o}`" + (f" {action.metavar}" if action.metavar else "")
                               for o in action.option_strings)
            out.append(f"| {flags} | {_default(action)} | {_meaning(action)} |")
    return "\n".join(out)


def methods_table():
    from scripts.goldens.ours import readme_table
    return readme_table()


def optimizers_table():
    from optim import BASES, OPTIMIZERS
    rows = ["| --method | optimizer |", "|---|---|"]
    for base in BASES:
        plain = base.plain.__name__.lower()
        rows += [f"| `{name}` | {'AdaTask over ' if name != plain else ''}`torch.optim.{base.plain.__name__}` |"
                 for name in OPTIMIZERS if name in (plain, f"{plain}_with_adatask")]
    return "\n".join(rows)


def tasks_table():
    from tasks import DEFAULT_TASKS, TASKS
    rows = ["| --tasks | release folders it reads | metrics | class |", "|---|---|---|---|"]
    rows += [f"| `{t.name}`{' (default)' if t.name in DEFAULT_TASKS else ''} | {', '.join(f'`{f}/`' for f in t.folders)} "
             f"| {', '.join(f'`{m}`' for m in t.metric_keys)} | `{t.cls}` |" for t in TASKS.values()]
    return "\n".join(rows)


def datasets_table():
    from data.datasets import DATASETS
    rows = ["| --dataset | default root | marker file | how it is got |", "|---|---|---|---|"]
    for d in DATASETS.values():
        got = "generated on demand" if d.generated else _cell(d.how_to_get)
        rows.append(f"| `{d.name}` | `{d.default_root.relative_to(REPOSITORY)}/` | {f'`{d.marker}`' if d.marker else '–'} "
                    f"| {got} |")
    return "\n".join(rows)


TABLES = {"flags": flag_table, "methods": methods_table, "optimizers": optimizers_table,
          "tasks": tasks_table, "datasets": datasets_table}


def blocks(text):
    """(name, body) of each generated block of a page's text."""
    return [(m["name"], m["body"].rstrip("\n")) for m in BLOCK.finditer(text)]


def unknown_names(root=REPOSITORY):
    """(page, name) of each block whose name is no key of TABLES."""
    return [(page, name) for page in pages(root) for name, _ in blocks(page.read_text()) if name not in TABLES]


def same(name, generated, shown):
    """Whether a shown block is the generated one; the methods table's measured bounds may
    differ by one power of ten (they round differently on another CPU)."""
    if name == "methods":
        from scripts.goldens.ours import same_but_bounds
        return same_but_bounds(generated, shown)
    return generated == shown


def rewrite(text, tables):
    """The page's text with each block's body replaced by tables[name] (names not in tables kept)."""
    def body(match):
        name = match["name"]
        if name not in tables:
            return match[0]
        return f"<!-- BEGIN GENERATED: {name} -->\n{tables[name]}\n<!-- END GENERATED: {name} -->"
    return BLOCK.sub(body, text)


def used_tables(root=REPOSITORY):
    """{name: generated text} of every table some page shows."""
    names = {name for page in pages(root) for name, _ in blocks(page.read_text())}
    return {name: TABLES[name]() for name in sorted(names) if name in TABLES}


def stale(root=REPOSITORY):
    """(page, name) of each block that differs from its generated table."""
    tables = used_tables(root)
    return [(page, name) for page in pages(root) for name, body in blocks(page.read_text())
            if name in tables and not same(name, tables[name], body)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m scripts.docs_tables", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite every generated block of README.md and docs/")
    action.add_argument("--check", action="store_true", help="exit 1 naming each stale or unknown block")
    args = parser.parse_args(argv)
    unknown = unknown_names()
    for page, name in unknown:
        print(f"{page.relative_to(REPOSITORY)}: no table named {name!r} (known: {', '.join(TABLES)})", file=sys.stderr)
    if args.write:
        tables = used_tables()
        for page in pages():
            text = page.read_text()
            if rewrite(text, tables) != text:
                page.write_text(rewrite(text, tables))
                print(f"rewrote {page.relative_to(REPOSITORY)}")
        return 1 if unknown else 0
    for page, name in stale():
        print(f"{page.relative_to(REPOSITORY)}: the {name!r} table is stale; run {WRITE_COMMAND}", file=sys.stderr)
        unknown.append((page, name))
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
