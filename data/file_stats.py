"""The size and modification time of every data file a run reads (docs/design.md, "Resume").

A run records them in its folder when it starts; a resume compares them with the files found
then, so data rewritten in place under the run (same names, same shapes) is refused instead of
mixed into it. One os.stat per file, no data read: the full SHA-256 is data.check's deep check.
"""
import os
from datetime import datetime

from data.layout import SPLITS

MAX_LISTED = 5


def file_stats(root, folders, splits=SPLITS):
    """{"<split>/<folder>/<name>": [size in bytes, mtime in ns]} of the files in `folders` of
    each split (a symlinked file: its target's, the bytes a run reads)."""
    stats = {}
    for split in splits:
        for folder in folders:
            path = os.path.join(root, split, folder)
            if not os.path.isdir(path):
                continue
            for entry in os.scandir(path):
                status = entry.stat()
                stats[f"{split}/{folder}/{entry.name}"] = [status.st_size, status.st_mtime_ns]
    return stats


def _change(before, now):
    if now is None:
        return "gone"
    if before is None:
        return "added"
    if before[0] != now[0]:
        return f"{before[0]} bytes, now {now[0]}"
    return f"rewritten at {datetime.fromtimestamp(now[1] / 1e9):%Y-%m-%d %H:%M:%S}"


def describe_changes(root, recorded, current):
    """None when `current` file_stats equal the `recorded` ones; else the changed files (the
    first MAX_LISTED named with what changed, then how many more), for a message."""
    changed = sorted(rel for rel in recorded.keys() | current.keys() if recorded.get(rel) != current.get(rel))
    if not changed:
        return None
    listed = ", ".join(f"{os.path.join(root, rel)} ({_change(recorded.get(rel), current.get(rel))})"
                       for rel in changed[:MAX_LISTED])
    more = f" and {len(changed) - MAX_LISTED} more" if len(changed) > MAX_LISTED else ""
    return f"{listed}{more}"
