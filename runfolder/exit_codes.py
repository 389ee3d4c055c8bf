"""Every exit status of main_cityscapes.py and of a sweep (scripts/sweep.sh, python -m sweeps),
with its meaning, in one table (docs/design.md, "Failures and exit codes").

A sweep reads its runs' statuses back (<name>.exit, a torchrun's 1, a busy folder's 75), so both
programs share one table: the same code means the same thing wherever it is seen. 74 and 75 are
sysexits' EX_IOERR and EX_TEMPFAIL; 128 + N is a stop by signal N, as a shell reports it.
"""
import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_WRITE = 74
EXIT_BUSY = 75
# The signals that stop a run cleanly, keeping its checkpoint. SIGUSR2: Slurm's warning before a
# time limit or preemption (sent by submitit).
STOP_SIGNALS = (signal.SIGINT, signal.SIGUSR2, signal.SIGTERM)


def stopped_by(signum):
    """The exit status of a process stopped by signal `signum`: 128 + signum."""
    return 128 + signum


EXIT_INTERRUPTED = stopped_by(signal.SIGINT)  # 130: Ctrl-C

MEANINGS = {
    EXIT_OK: "finished (a sweep: every run finished)",
    EXIT_FAILED: "a sweep: a run failed, after the others ran, or the aggregation did (a Slurm element that ended "
                 "before its run wrote an exit status counts as a failed run); a torchrun of a run exits 1 for any "
                 "failure of its processes, whose rank 0 says which",
    EXIT_BAD_INPUT: "bad input: a flag, the data, a run folder or its config.json; a sweep's arguments or plan, or a "
                    "backend that cannot run it as asked; the message names it",
    EXIT_NON_FINITE: "non-finite loss, weights or test metrics; the last good checkpoint is kept",
    EXIT_WRITE: "a file could not be written (disk full, read-only, quota); nothing before it is lost",
    EXIT_BUSY: "the run folder is owned by another live process (busy); a sweep: some runs are running in other "
               "processes (rerun when they end), or another launcher runs the sweep (it is named)",
    stopped_by(signal.SIGINT): "stopped by SIGINT (Ctrl-C); a sweep stopped by SIGINT or SIGTERM (its runs keep "
                               "their checkpoints; rerun to resume)",
    stopped_by(signal.SIGUSR2): "stopped by SIGUSR2 (Slurm's warning before a time limit or preemption, sent by "
                                "submitit)",
    stopped_by(signal.SIGTERM): "stopped by SIGTERM (`kill`, Slurm or Ray preemption, or the sweep that started "
                                "it died)",
}


def markdown_table():
    """The table as docs/design.md shows it."""
    return "\n".join(["| code | meaning |", "|---|---|"] + [f"| {code} | {text} |" for code, text in MEANINGS.items()])
