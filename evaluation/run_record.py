"""The run folder of DESIGN's contract: config.json, metrics.jsonl, summary.json, checkpoints.

One folder per run, never shared: a folder that already holds a run is refused. The
summary is written last, so its presence is what marks a run as finished.
"""
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import torch

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


# ---------------------------------------------------------------- checkpoints

CHECKPOINT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"


def rng_state():
    """Every RNG state as tensors and plain values, so torch.load(weights_only=True) reads it."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir, state):
    """Write atomically and keep the one before: the new file is complete before it
    replaces checkpoint.pt, and the old checkpoint.pt becomes checkpoint.prev.pt."""
    run_dir = Path(run_dir)
    tmp = run_dir / f"{CHECKPOINT}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if (run_dir / CHECKPOINT).exists():
        os.replace(run_dir / CHECKPOINT, run_dir / PREVIOUS)
    os.replace(tmp, run_dir / CHECKPOINT)


def load_checkpoint(run_dir, map_location="cpu"):
    """(state, messages) from checkpoint.pt, or from checkpoint.prev.pt when the latest is
    missing, corrupt or truncated; (None, messages) when the run has none yet."""
    messages = []
    for name in (CHECKPOINT, PREVIOUS):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            return torch.load(path, map_location=map_location, weights_only=True), messages
        except Exception as e:  # a truncated or corrupt file fails in many ways (zip, pickle, EOF)
            messages.append(f"{path} is corrupt or truncated ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    if messages:
        raise RunFolderError("; ".join(messages) + "; no usable checkpoint left")
    return None, messages


def rewrite_metrics(run_dir, rows):
    """Replace metrics.jsonl by the rows a checkpoint recorded (drops epochs run after it)."""
    tmp = Path(run_dir) / f"{METRICS}.tmp"
    tmp.write_text("".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))
    os.replace(tmp, Path(run_dir) / METRICS)


def truncate_csv(path, epochs):
    """Keep the header and the rows of the first `epochs` epochs of a per-epoch CSV."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    column = lines[0].rstrip("\n").split(",").index("epoch")
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",")[column]) < epochs]
    tmp = Path(f"{path}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
