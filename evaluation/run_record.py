"""The run folder of DESIGN's contract: config.json, metrics.jsonl, summary.json, checkpoints.

One folder per run, never shared: a folder that already holds a run is refused. The
summary is written last, so its presence is what marks a run as finished.
"""
import errno
import json
import math
import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .delta_m import delta_m

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
LAST_N = 10


class RunFolderError(ValueError):
    pass


class RunWriteError(Exception):
    """A file of the run folder could not be written (disk full, read-only, quota); the
    message names the file. The file it would have replaced is left as it was."""


def check_new_run_dir(run_dir, entries):
    """A new run's folder, owned by the caller already, must hold no run: a finished one is
    refused, an unfinished one with the --resume command that continues it. `entries`: the
    folder's names without the lock's own files (run_lock.run_files)."""
    run_dir = Path(run_dir)
    if SUMMARY in entries:
        raise RunFolderError(f"--name {run_dir.name}: {run_dir} holds a finished run; choose another --name or --out")
    if entries:
        raise RunFolderError(
            f"--name {run_dir.name}: {run_dir} holds an unfinished run; continue it with --resume {run_dir}, "
            f"or choose another --name"
        )


@contextmanager
def atomic_file(path, mode="w", previous=None):
    """Write `path` through a temporary file that replaces it only once complete and on
    disk, so a reader (or a resume after a kill) never sees half a file. `previous`: where
    the replaced file goes. On any failure the temporary file is removed and OSError becomes
    RunWriteError naming `path`."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            full = " (the disk is full)" if e.errno == errno.ENOSPC else ""
            raise RunWriteError(f"cannot write {path}: {e.strerror or e}{full}") from None
        raise


def write_json(path, obj):
    with atomic_file(path) as f:
        f.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_metrics(run_dir, rows):
    """metrics.jsonl from all finished epochs' rows, replaced whole: a kill or a full disk
    never leaves a torn line, and a resume rewrites it from its checkpoint's rows."""
    with atomic_file(Path(run_dir) / METRICS) as f:
        f.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))


def read_metrics(run_dir):
    path = Path(run_dir) / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _mean_of(rows):
    """The mean of each metric over `rows`; "class_iou" per class over the rows where that
    class's IoU is defined (None where it never is). Rows older than class_iou lack it."""
    keys = [k for k, v in rows[0].items() if k != "delta_m" and isinstance(v, (int, float))]
    mean = {k: math.fsum(r[k] for r in rows) / len(rows) for k in keys}
    per_class = [r["class_iou"] for r in rows if "class_iou" in r]
    if per_class:
        mean["class_iou"] = {}
        for name in per_class[-1]:
            defined = [ious[name] for ious in per_class if ious.get(name) is not None]
            mean["class_iou"][name] = math.fsum(defined) / len(defined) if defined else None
    return mean


def summarize(rows, baseline, baseline_name):
    """summary.json from the metrics.jsonl rows: the last epoch's test metrics, the mean of
    the last 10 epochs' test metrics, and Δm of both (Δm of the mean, not the mean of Δm,
    as the field reports it). A run shorter than 10 epochs averages all of them:
    "last10_epochs" says how many were averaged (the key "last10" is kept for readers)."""
    final = rows[-1]["test"]
    averaged = rows[-LAST_N:]
    last = _mean_of([r["test"] for r in averaged])
    has_metrics = baseline is not None and all(k in final for k in baseline)
    return {
        "final": final,
        "last10": last,
        "last10_epochs": len(averaged),
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
    with atomic_file(run_dir / CHECKPOINT, "wb", previous=run_dir / PREVIOUS) as f:
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch's zip writer reports a full disk as "unexpected pos"
            raise RunWriteError(f"cannot write {run_dir / CHECKPOINT}: {str(e).strip().splitlines()[0]} "
                                   "(disk full?)") from None


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
        except Exception as e:  # noqa: BLE001 -- a truncated or corrupt file fails in many ways (zip, pickle, EOF)
            detail = next(iter(str(e).splitlines()), "") or "no detail"  # EOFError's message is empty
            messages.append(f"{path} is corrupt or truncated ({type(e).__name__}: {detail[:120]})")
    if messages:
        raise RunFolderError("; ".join(messages) + "; no usable checkpoint left")
    return None, messages


def stale_temporaries(run_dir):
    """Temporary files a killed writer left behind; they never hold anything needed."""
    return sorted(Path(run_dir).glob("*.tmp"))
