"""Train and evaluate one multi-task experiment on CityScapes (or SynthCity).

    python3 main_cityscapes.py --method=adam_with_adatask

Flags (experiment/flags.py) → one experiment (experiment/setup.py) → the train/evaluate loop
(experiment/loop.py, with optim/engine.py for each step); results go to stdout, TensorBoard
and the run folder <out>/<name>/ (config.json, metrics.jsonl, summary.json, checkpoints).
This file maps what can go wrong to one line and an exit code (runfolder/exit_codes.py). Under
torchrun (experiment/world.py) every process runs main(); rank 0 owns the run folder and speaks.
"""
import os
import signal
import sys
from pathlib import Path

import torch

from data.check import DatasetError
from evaluation import console, run_config, run_record
from experiment.flags import parse_args
from experiment.loop import run
from experiment.setup import Experiment
from experiment.world import SINGLE, PeerFailed, from_env, join, leave, lost_a_peer, quiet_unless_main
from optim.engine import NonFinite
from runfolder import atomic, lease
from runfolder.exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_NON_FINITE,
    EXIT_OK,
    EXIT_WRITE,
    STOP_SIGNALS,
    stopped_by,
)
from runfolder.files import CHECKPOINT, CONFIG


class Interrupted(BaseException):
    """SIGINT or SIGTERM: a BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def continue_command(run_dir, world=SINGLE):
    """The exact command that continues a run, with the interpreter that ran this one; a run of
    several processes continues as one again (torchrun), on as many processes per node."""
    resume = [console.shown_path(Path(__file__)), "--resume", console.shown_path(run_dir)]
    if world.size == 1:
        return console.python_command(*resume)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    command = console.python_command("-m", "torch.distributed.run", "--nproc-per-node", per_node, *resume)
    nodes = world.size // per_node
    return command if nodes == 1 else f"{command} (on each of its {nodes} nodes, with the rendezvous flags it began with)"


def where_it_stands(exp):
    """What a stopped run kept, and how to continue it."""
    if exp is None or not (exp.run_dir / CONFIG).exists():
        return "the run had not started; nothing was written"
    kept = exp.run_dir / CHECKPOINT
    done = f"the last good checkpoint is {kept}" if kept.exists() else "no epoch had finished"
    return f"{done}; continue with: {continue_command(exp.run_dir, exp.world)}"


def raise_on_signals():
    """SIGINT, SIGTERM and SIGUSR2 (Ctrl-C, kill, Slurm and Ray preemption) raise Interrupted in
    the main thread, also where the process that started this one had them ignored or blocked (a
    shell's background job ignores SIGINT; a child inherits both). Returns what
    restore_signals puts back."""
    def handler(signum, frame):
        if run_record.hold_signal(signum):  # a run-folder file is being written: raised again once it is
            return
        for sig in STOP_SIGNALS:  # a second signal (Ctrl-C twice, a launcher passing it on) must not
            signal.signal(sig, signal.SIG_IGN)  # interrupt the clean stop with a traceback
        raise Interrupted(signum)
    handlers = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    return handlers, signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def restore_signals(previous):
    """The handlers and the signal mask from before raise_on_signals (main() called from Python)."""
    handlers, mask = previous
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def own_resumed(run_dir):
    if not Path(run_dir).is_dir():
        raise run_record.RunFolderError(f"--resume {run_dir}: no such run folder")
    try:
        return lease.acquire(Path(run_dir))
    except OSError as e:  # a read-only folder: its lock file cannot be opened
        raise atomic.WriteError(f"--resume {run_dir}: cannot own the run folder, {e.filename}: {e.strerror}") from None


def set_threads(threads):
    """OMP_NUM_THREADS, when set, wins over --threads: a launcher that pins it knows the machine."""
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        threads = int(from_env)
    if threads is not None:
        torch.set_num_threads(threads)


def main(argv=None):
    world = from_env()
    quiet_unless_main(world)
    args = parse_args(argv)
    set_threads(args.threads)
    previous_signals = raise_on_signals()
    exp = ownership = None
    try:
        lease.exit_with_parent_from_env()  # launchers such as scripts/sweep.sh set MTL_PARENT_PID
        join(world, args.device)
        if args.resume:  # owned before its files are read
            ownership = world.from_main(lambda: own_resumed(args.resume), share=False)
        # bad input fails here, before any training, with a message instead of a traceback
        exp = Experiment(args, world)
        ownership = ownership or exp.ownership
        run(exp)
        return EXIT_OK
    except PeerFailed:  # rank 0 says why; torchrun exits 1 for it
        return EXIT_FAILED
    except lease.RunBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BUSY
    except (DatasetError, run_record.RunFolderError, run_config.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as e:
        if exp is not None:  # past the checks, a ValueError is a bug: let its traceback show
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFinite as e:
        print(f"error: {e}. Stopping; {where_it_stands(exp)} (metrics.jsonl holds the finished epochs). "
              f"Lower --lr or try --clip-grad-norm in a new run.", file=sys.stderr)
        return EXIT_NON_FINITE
    except RuntimeError as e:
        if not lost_a_peer(e, world):
            raise
        reason = str(e).split("] ", 1)[-1].split(". ")[0]  # gloo's sentence, without its source location
        print(f"error: another process of this run is gone ({reason}); {where_it_stands(exp)}", file=sys.stderr)
        return EXIT_FAILED
    except atomic.WriteError as e:
        stands = (f"nothing was changed; continue with: {continue_command(args.resume, world)}"
                  if exp is None and args.resume else where_it_stands(exp))
        print(f"error: {e}. Nothing written before it was lost; {stands} once the folder is writable again.",
              file=sys.stderr)
        return EXIT_WRITE
    except Interrupted as e:
        print(f"\nstopped by {e}; {where_it_stands(exp)}", file=sys.stderr)
        return stopped_by(e.signum)
    finally:
        if ownership is not None:
            ownership.release()
        restore_signals(previous_signals)
        leave(world)


if __name__ == "__main__":
    sys.exit(main())
