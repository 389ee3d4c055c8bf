"""The run folder's record (docs/design.md, "Run folder"): config.json, metrics.jsonl,
summary.json, checkpoints; their writer and their reader in one place, on the schema of
run_config. The file names and the atomic writer are runfolder's, torch-free; what needs torch
(checkpoints, RNG states) and the run's own content is here.

One folder per run, never shared: a folder that already holds a run is refused. The
summary is written last, so its presence is what marks a run as finished.
"""
import json
import math
import platform
import random
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from runfolder import atomic
from runfolder.files import CHECKPOINT, CONFIG, METRICS, PREVIOUS_CHECKPOINT, SUMMARY
from runfolder.lease import is_lock_file

from . import run_config
from .delta_m import delta_m

LAST_N = 10


class RunFolderError(ValueError):
    pass


class RunError(ValueError):
    """A run folder that cannot be read or used as asked; the message names the folder."""


def check_new_run_dir(run_dir, entries):
    """A new run's folder, owned by the caller already, must hold no run: a finished one is
    refused, an unfinished one with the --resume command that continues it. `entries`: the
    folder's names without the lock's own files (runfolder.lease.run_files)."""
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
    """Write a file of the run folder with runfolder.atomic.atomic_write (whole or not at all;
    atomic.WriteError naming it on failure). A stop signal that arrives meanwhile waits for the
    write (signals_held)."""
    with signals_held(), atomic.atomic_write(path, mode, previous) as f:
        yield f


# A stop signal's handler raises an exception wherever the main thread is. Inside torch.save
# that exception is lost: torch's zip writer reports "unexpected pos" instead, which read as a
# full disk, and the stop by the signal went unreported. So a handler asks hold_signal first:
# while a run-folder file is being written, the signal is held and raised again, by
# signals_held, as soon as the file is complete.
_held = {"depth": 0, "signal": None}


def hold_signal(signum):
    """True (and the signal kept for later) while a run-folder file is being written."""
    if _held["depth"] == 0:
        return False
    _held["signal"] = signum
    return True


@contextmanager
def signals_held():
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if _held["depth"] == 0 and _held["signal"] is not None:
            signum, _held["signal"] = _held["signal"], None
            signal.raise_signal(signum)


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


def new_config(settings, data, tasks, baseline, weighting, environment, parameters, git_commit, previous=None):
    """config.json's content (run_config has its schema): `data` the data's record (name, root,
    synthetic, synthcity, image_size, train_samples, val_samples, identity), `baseline` its name,
    reason and metrics, `weighting` its name and options. A resumed run (`previous`: its config)
    keeps its start time and lists every resumption."""
    now = datetime.now().isoformat(timespec="seconds")
    return {
        "schema_version": run_config.SCHEMA_VERSION, "settings": settings, "data": data, "baseline": baseline,
        "tasks": list(tasks), "weighting": weighting, "environment": environment, "parameters": parameters,
        "git_commit": git_commit,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "started": now if previous is None else previous["started"],
        **({} if previous is None else {"resumed": previous.get("resumed", []) + [now]}),
    }


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
    with atomic_file(run_dir / CHECKPOINT, "wb", previous=run_dir / PREVIOUS_CHECKPOINT) as f:
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch's zip writer reports a full disk as "unexpected pos"
            raise atomic.WriteError(f"cannot write {run_dir / CHECKPOINT}: {str(e).strip().splitlines()[0]} "
                                    "(disk full?)") from None


def load_checkpoint(run_dir, map_location="cpu"):
    """(state, messages) from checkpoint.pt, or from checkpoint.prev.pt when the latest is
    missing, corrupt or truncated; (None, messages) when the run has none yet."""
    messages = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
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
    """Temporary files a killed writer left behind; they never hold anything needed. The lease's
    are the heartbeat's, which may be writing one at this moment."""
    return sorted(p for p in Path(run_dir).glob(atomic.TEMPORARIES) if not is_lock_file(p.name))


# ---------------------------------------------------------------- reading runs back

def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise RunError(f"{path}: cannot read it ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: invalid JSON ({e})") from e


@dataclass
class Run:
    """A run folder as the readers (baselines, aggregation) see it, through today's flags and
    method options (`definitions`: run_config.SettingDefinitions)."""
    path: Path
    config: dict
    summary: dict | None  # None while the run is unfinished
    definitions: run_config.SettingDefinitions

    @property
    def settings(self):
        return run_config.settings(self.config, self.definitions)

    @property
    def tasks(self):
        return tuple(self.config["tasks"])

    @property
    def seed(self):
        return self.settings["seed"]

    @property
    def setup(self):
        """What must be equal between runs for their test metrics to be averaged or compared."""
        return run_config.setup_of(self.config, self.definitions)

    @property
    def method_identity(self):
        """The method's own settings (its options, head_grads): runs of one row agree on them."""
        return run_config.method_identity(self.config, self.definitions)

    @property
    def departures(self):
        """The method's own settings that depart from its defaults, for the row label."""
        return run_config.departures(self.config, self.definitions)

    def last10(self, metric):
        value = (self.summary or {}).get("last10", {}).get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RunError(f"{self.path / SUMMARY}: \"last10\" has no finite {metric!r} (got {value!r})")
        return float(value)

    @property
    def last_epochs(self):
        """How many epochs "last10" averages: summary.json's "last10_epochs", or in a summary from
        before it, min(10, the epochs in metrics.jsonl) as summarize took them."""
        n = (self.summary or {}).get("last10_epochs")
        if n is None:
            n = min(LAST_N, len(read_metrics(self.path)))
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RunError(f"{self.path}: \"last10\" averages {n!r} epochs (summary.json \"last10_epochs\", "
                           f"else the rows of metrics.jsonl); expected a positive integer")
        return n


def read_run(path, definitions):
    """The run in folder `path`, its settings read through `definitions`
    (experiment.flags.setting_definitions()); its summary is None if it has not finished."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise RunError(f"{path}: no {CONFIG}; not a run folder of main_cityscapes.py")
    try:
        config = run_config.read_config(path / CONFIG)
    except run_config.ConfigError as e:
        raise RunError(str(e)) from None
    return Run(path, config, read_json(path / SUMMARY) if (path / SUMMARY).exists() else None, definitions)


def last_epochs_text(runs):
    """The N of "the mean of the last N epochs" of `runs`: one number, since runs of one setup share
    their epochs; should they not, every N, "5/10", rather than a wrong one."""
    return "/".join(str(n) for n in sorted({r.last_epochs for r in runs}))


def last_epochs_phrase(runs):
    """"the last 10 epochs", "the last epoch"."""
    text = last_epochs_text(runs)
    return "the last epoch" if text == "1" else f"the last {text} epochs"


def check_distinct_seeds(runs):
    """Two runs with one seed would count that seed twice."""
    seen = {}
    for run in runs:
        if run.seed in seen:
            raise RunError(f"{run.path} and {seen[run.seed]} are both seed {run.seed} of the same configuration; "
                           f"leave one out")
        seen[run.seed] = run.path
