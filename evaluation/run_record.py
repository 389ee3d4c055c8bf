"""The run folder's record (docs/design.md, "Run folder"): config.json, metrics.jsonl,
summary.json, checkpoints; their writer and their reader in one place, on the schema of
run_config. The file names and the atomic writer are runfolder's, torch-free; what needs torch
(checkpoints, RNG states) and the run's own content is here.

One folder per run, never shared: a folder that already holds a run is refused. The
summary is written last, so its presence is what marks a run as finished.
"""
import json
import math
import pickle
import platform
import random
import re
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from runfolder import atomic
from runfolder.files import CHECKPOINT, CONFIG, DATA_FILES, METRICS, PREVIOUS_CHECKPOINT, SUMMARY
from runfolder.lease import is_lock_file

from . import run_config
from .summary import InconsistentRun, finished_summary, summarize  # noqa: F401 -- summarize: the loop writes with it


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
    if set(entries) - {DATA_FILES}:  # the data record alone: stopped before its config.json, nothing to resume
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
    """The rows of metrics.jsonl ([] without one); ValueError naming the file and line of one that
    is no JSON."""
    path = Path(run_dir) / METRICS
    rows = []
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path} line {number}: not JSON ({e})") from None
    return rows


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


# What a checkpoint must hold to be continued, with the types its values may have. Checkpoints
# older than "au_rows" and "data_identity" lack them (read with defaults); a value of a type
# torch.load(weights_only=True) can build but the run cannot use is refused by its key.
CHECKPOINT_KEYS = {"epoch": int, "step": int, "rows": list, "settings": dict, "model": dict, "optimizer": dict,
                   "scheduler": dict, "weighting": dict, "tracker": (dict, type(None)), "rng": dict}
OPTIONAL_CHECKPOINT_KEYS = {"au_rows": list, "data_identity": (dict, type(None))}


def checkpoint_problem(state, epochs, rows):
    """Why `state` cannot be continued in a run of `epochs` epochs (config.json's) whose
    metrics.jsonl holds `rows`; None when it can. A checkpoint is written after its epoch's row,
    so its "epoch" (the next epoch to run, 1 to `epochs`) is the number of its "rows", and they
    are the first rows of metrics.jsonl."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, expected a dict of the run's state"
    for key, kinds in [*CHECKPOINT_KEYS.items(), *OPTIONAL_CHECKPOINT_KEYS.items()]:
        if key not in state:
            if key in CHECKPOINT_KEYS:
                return f'has no "{key}"'
        elif not isinstance(state[key], kinds) or isinstance(state[key], bool):
            expected = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
            return f'"{key}" is a {type(state[key]).__name__}, expected {expected}'
    epoch, done = state["epoch"], len(state["rows"])
    if not 1 <= epoch <= epochs:
        return f'"epoch" is {epoch}, expected 1 to {epochs} (the run\'s settings.epochs in {CONFIG})'
    if state["step"] < 0:
        return f'"step" is {state["step"]}, expected 0 or more'
    if done != epoch:
        return f'"rows" holds {done} epochs, but "epoch" says {epoch} are done'
    try:
        same = json.loads(json.dumps(state["rows"], allow_nan=False)) == rows[:epoch]  # as metrics.jsonl has them
    except (TypeError, ValueError):
        same = False
    if not same:
        return f'"rows" are not the first {epoch} rows of {METRICS} (it holds {len(rows)})'
    return None


def _unloadable(path, error):
    """Why torch.load failed on `path`, in one line of whole words. torch's own message for a
    file that would run code is many lines on how to load it anyway, which is not to be done."""
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        return (f"{path} is refused: it names {found.group(1) if found else 'code'}, where a checkpoint holds only "
                f"tensors and plain data; loading it could run code, so it is not loaded")
    detail = next(iter(str(error).splitlines()), "") or "no detail"  # EOFError's message is empty
    if len(detail) > 160:
        detail = detail[:160].rsplit(" ", 1)[0] + " ..."
    return f"{path} is corrupt or truncated ({type(error).__name__}: {detail})"


def load_checkpoint(run_dir, epochs, map_location="cpu"):
    """(state, messages) from checkpoint.pt, or from checkpoint.prev.pt when the latest is
    missing, corrupt, truncated or not of this run (checkpoint_problem, against `epochs`, config.json's,
    and metrics.jsonl); (None, messages) when the run has none yet. RunFolderError naming each
    file when neither is usable, or when one is no file: the next save could not replace it."""
    run_dir = Path(run_dir)
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if path.exists() and not path.is_file():
            raise RunFolderError(f"{path} is no file (a folder?): move it out of the run folder; the run keeps its "
                                 f"checkpoints there")
    try:
        rows = read_metrics(run_dir)
    except ValueError as e:
        raise RunFolderError(str(e)) from None
    messages = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 -- a truncated or corrupt file fails in many ways (zip, pickle, EOF)
            messages.append(_unloadable(path, e))
            continue
        problem = checkpoint_problem(state, epochs, rows)
        if problem is None:
            return state, messages
        messages.append(f"{path} does not fit the run: {problem}")
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
    summary: dict | None  # recomputed from metrics.jsonl (check_finished); None while the run is unfinished
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

    def last10(self, metric, split="test"):
        """The mean of `metric` over the last epochs: of the test split, or of the validation
        split ("val", summary.json's "val_last10", for a run that holds one out)."""
        key = "last10" if split == "test" else f"{split}_last10"
        value = (self.summary or {}).get(key, {}).get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RunError(f"{self.path / SUMMARY}: \"{key}\" has no finite {metric!r} (got {value!r})")
        return float(value)

    @property
    def last_epochs(self):
        """How many epochs "last10" averages: min(10, the run's epochs)."""
        return self.summary["last10_epochs"]


def read_run(path, definitions):
    """The run in folder `path`, its settings read through `definitions`
    (experiment.flags.setting_definitions()); its summary, recomputed from metrics.jsonl, is None
    if it has not finished. InconsistentRunFolder for a finished run whose summary.json or
    metrics.jsonl disagree (evaluation/summary.py)."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise RunError(f"{path}: no {CONFIG}; not a run folder of main_cityscapes.py")
    try:
        config = run_config.read_config(path / CONFIG)
    except run_config.ConfigError as e:
        raise RunError(str(e)) from None
    summary = check_finished(path, config) if (path / SUMMARY).exists() else None
    return Run(path, config, summary, definitions)


class InconsistentRunFolder(RunError):
    """A finished run folder whose files disagree: named, never averaged nor resumed."""


def check_finished(path, config):
    """The summary of the finished run in `path` (its config.json read as `config`), recomputed
    from metrics.jsonl and checked against summary.json; InconsistentRunFolder where they differ."""
    try:
        rows = read_metrics(path)
        stored = json.loads((path / SUMMARY).read_text())
    except (OSError, ValueError) as e:
        raise InconsistentRunFolder(f"{path}: inconsistent: {METRICS} or {SUMMARY} is unreadable ({e})") from None
    try:
        return finished_summary(config, rows, stored)
    except InconsistentRun as e:
        raise InconsistentRunFolder(f"{path}: inconsistent: {e}") from None


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
