"""Every file name of a run folder and of a sweep folder (docs/design.md, "Files").

A run folder <out>/<name>/ holds one run of main_cityscapes.py: its record (the names below,
written by evaluation/run_record.py) and its ownership (runfolder/lease.py), which is not part
of the run. A sweep folder <runs>/<sweep>/ holds the plan and the run folders, each with its
launcher's log and exit status beside it.
"""
from pathlib import Path

# The record of a run.
CONFIG = "config.json"  # every setting; written first, so it marks a run that has started
METRICS = "metrics.jsonl"  # one row per finished epoch
SUMMARY = "summary.json"  # written last, so it marks a finished run
AU = "au.csv"  # per-layer task dominance, with --track-au
CHECKPOINT, PREVIOUS_CHECKPOINT = "checkpoint.pt", "checkpoint.prev.pt"  # the latest and the one before
DATA_FILES = "data_files.json"  # size and mtime of each data file at the start, compared on resume

# Its ownership: the flock, the heartbeat lease and the log of takeovers.
LOCK, LEASE, LEASE_LOG = ".lock", "lease.json", "lease.log"
LOCK_FILES = frozenset({LOCK, LEASE, LEASE_LOG})

# A sweep folder: the plan, and beside each run folder <name>/ its <name>.log and <name>.exit, and
# <name>.pruned for a run that a tuner stopped early (written after its process exited).
PLAN = "plan.json"
# A tuner's sweep (sweeps/tune.py) also holds its Optuna study and the study's snapshot for --status.
STUDY_DB, STUDY_JSON = "study.db", "study.json"
LOG_SUFFIX, EXIT_SUFFIX, PRUNED_SUFFIX = ".log", ".exit", ".pruned"


def log_file(sweep_dir, name):
    """<sweep>/<name>.log: the run's output, appended to by every start of it."""
    return Path(sweep_dir) / f"{name}{LOG_SUFFIX}"


def exit_file(sweep_dir, name):
    """<sweep>/<name>.exit: the exit status of the run's last start by the sweep, once it ended."""
    return Path(sweep_dir) / f"{name}{EXIT_SUFFIX}"


def pruned_file(sweep_dir, name):
    """<sweep>/<name>.pruned: the mark of a run stopped early by a tuner's pruner; removing it
    makes the run resumable by the sweep again."""
    return Path(sweep_dir) / f"{name}{PRUNED_SUFFIX}"
