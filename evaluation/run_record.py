"""The run folder of DESIGN's contract: config.json, metrics.jsonl, summary.json.

One folder per run, never shared: a folder that already holds a run is refused. The
summary is written last, so its presence is what marks a run as finished.
"""
import json
import math
import os
from pathlib import Path

from .delta_m import delta_m

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
LAST_N = 10


class RunFolderError(ValueError):
    pass


def create_run_dir(out, name):
    """<out>/<name>, new or empty; a folder holding a run (finished or not) is refused."""
    run_dir = Path(out) / name
    if (run_dir / SUMMARY).exists():
        raise RunFolderError(f"--name {name}: {run_dir} holds a finished run; choose another --name or --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunFolderError(
            f"--name {name}: {run_dir} holds an unfinished run; continue it with --resume {run_dir}, "
            f"or choose another --name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_json(path, obj):
    """Write atomically (temporary file, then rename), so a reader never sees half a file."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def append_metrics(run_dir, row):
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(row, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir):
    path = Path(run_dir) / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _mean_of(rows):
    keys = [k for k, v in rows[0].items() if k != "delta_m" and isinstance(v, (int, float))]
    return {k: math.fsum(r[k] for r in rows) / len(rows) for k in keys}


def summarize(rows, baseline, baseline_name):
    """summary.json from the metrics.jsonl rows: the last epoch's test metrics, the mean of
    the last 10 epochs' test metrics, and Δm of both (Δm of the mean, not the mean of Δm,
    as the field reports it)."""
    final = rows[-1]["test"]
    last = _mean_of([r["test"] for r in rows[-LAST_N:]])
    has_metrics = baseline is not None and all(k in final for k in baseline)
    return {
        "final": final,
        "last10": last,
        "delta_m": {
            "final": delta_m(final, baseline) if has_metrics else None,
            "last10": delta_m(last, baseline) if has_metrics else None,
            "baseline": baseline_name if has_metrics else None,
        },
    }
