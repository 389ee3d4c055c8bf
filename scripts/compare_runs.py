"""Are two sets of runs bitwise equal? The acceptance check of a refactor that must keep every
behaviour: the same runs trained before and after it (scripts/equality_runs.sh) have the same
metrics.jsonl in every key but the timings.

    .venv/bin/python -m scripts.compare_runs BEFORE_DIR AFTER_DIR

A run is a folder holding metrics.jsonl, named by its path under BEFORE_DIR or AFTER_DIR. The
runs of both trees are compared row by row and key by key, nested keys flattened (test/miou,
test/class_iou/sky): values must be of one JSON type and equal, floats by == (NaN equals NaN), a
key on one side only differs. Keys named `seconds` or containing `time` are left out, with
everything under them. Prints a Markdown table of the runs and exits with 1 if a run differs or is
missing on one side, 0 if all are equal.
"""
import argparse
import json
import math
import sys
from pathlib import Path

METRICS = "metrics.jsonl"
SHOWN_KEYS = 4  # differing keys named per run in the table; the rest are counted


def is_timing(key):
    return key == "seconds" or "time" in key


def flatten(value, prefix=""):
    """{flattened key: leaf value} of a metrics row, without its timings."""
    if isinstance(value, dict):
        items = ((str(key), item) for key, item in value.items() if not is_timing(str(key)))
    elif isinstance(value, list):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return {prefix: value}
    leaves = {}
    for key, item in items:
        leaves.update(flatten(item, f"{prefix}/{key}" if prefix else key))
    return leaves


def same(a, b):
    """Exact equality of two JSON leaves: 1 and 1.0, or True and 1, differ as the files do."""
    if type(a) is not type(b):
        return False
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def read_rows(path):
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(flatten(json.loads(line)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not a JSON object ({e})") from None
    return rows


def compare_rows(before, after):
    """(keys compared, sorted differing keys) of two runs' flattened rows; a row present on one
    side only differs in all its keys."""
    compared, differing = 0, set()
    for index in range(max(len(before), len(after))):
        old = before[index] if index < len(before) else {}
        new = after[index] if index < len(after) else {}
        for key in old.keys() | new.keys():
            compared += 1
            if key not in old or key not in new or not same(old[key], new[key]):
                differing.add(key)
    return compared, sorted(differing)


def runs(root):
    """{run name: metrics file} of the run folders under root, at any depth."""
    return {str(path.parent.relative_to(root)): path for path in root.rglob(METRICS)}


def describe(differing):
    shown = ", ".join(differing[:SHOWN_KEYS])
    return shown + (f" (+{len(differing) - SHOWN_KEYS} more)" if len(differing) > SHOWN_KEYS else "")


def compare_trees(before_root, after_root):
    """(table rows, whether every run is equal): one (run, rows, keys compared, differing) per run."""
    before, after = runs(before_root), runs(after_root)
    table, equal = [], True
    for name in sorted(before.keys() | after.keys()):
        if name not in after or name not in before:
            table.append((name, "-", "-", f"missing in {after_root if name not in after else before_root}"))
            equal = False
            continue
        old, new = read_rows(before[name]), read_rows(after[name])
        compared, differing = compare_rows(old, new)
        rows = str(len(old)) if len(old) == len(new) else f"{len(old)} / {len(new)}"
        table.append((name, rows, str(compared), describe(differing) if differing else "none"))
        equal = equal and not differing and len(old) == len(new)
    return table, equal


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     prog="python -m scripts.compare_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, metavar="BEFORE_DIR", help="folder of the runs before the change")
    parser.add_argument("after", type=Path, metavar="AFTER_DIR", help="folder of the same runs after it")
    args = parser.parse_args(argv)
    for flag, root in (("BEFORE_DIR", args.before), ("AFTER_DIR", args.after)):
        if not root.is_dir():
            parser.error(f"{flag} {root}: not a folder")
    if not runs(args.before) and not runs(args.after):
        parser.error(f"no run folders (folders holding {METRICS}) in {args.before} or {args.after}")
    try:
        table, equal = compare_trees(args.before, args.after)
    except ValueError as e:
        parser.error(str(e))
    print("| run | rows | keys compared | differing keys |\n|---|---|---|---|")
    for line in table:
        print("| " + " | ".join(line) + " |")
    print("all runs equal" if equal else "runs differ", flush=True)
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
