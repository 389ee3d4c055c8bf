"""Train and evaluate one multi-task experiment on CityScapes (or SynthCity).

    python3 main_cityscapes.py --method=adam_with_adatask

Flags → one experiment → the train/evaluate loop; results go to stdout, TensorBoard
and the run folder <out>/<name>/ (config.json, metrics.jsonl, summary.json, checkpoints).
"""
import argparse
import contextlib
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from data import source as data_source
from data import synthcity
from data.augment import DEPTH_RULES
from data.check import DatasetError
from data.cityscapes import CityscapesNpy
from data.identity import data_identity
from data.layout import CLASS_COUNTS
from evaluation import console, run_config, run_lock, run_record, tensorboard_log
from evaluation.delta_m import delta_m, select_baseline
from evaluation.metrics import SplitMeter
from evaluation.visualize import sample_panel
from models import MODELS, TASKS, build_model
from models.losses import LOSSES
from optim import OPTIMIZERS, build_optimizer
from optim.dominance import DominanceTracker
from optim.dominance import csv_rows as au_csv_rows
from optim.dominance import write_csv as write_au_csv
from optim.multitask_step import MultiTaskStep
from optim.weighting import WEIGHTINGS
from optim.weighting.base import StepContext
from optim.weighting.cli import add_weighting_flags, build_weighting_from_args, flag_dest
from optim.weighting.lookahead import losses_after_fn

NUM_PANELS = 4  # fixed validation images shown in TensorBoard each epoch
AU_CSV = "au.csv"
# Exit codes (README, "Exit codes"): 74 and 75 are sysexits' EX_IOERR and EX_TEMPFAIL, 128 + N a signal.
EXIT_BAD_INPUT, EXIT_NON_FINITE, EXIT_WRITE, EXIT_BUSY = 2, 3, 74, 75
# SIGUSR2: Slurm's (submitit's) warning before a time limit or preemption
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGUSR2: 140}
AT_LEAST_ONE = ("epochs", "batch_size", "lr_step", "synthcity_train", "synthcity_val", "diagnostics_every")
POSITIVE = ("lr", "lr_gamma", "width_mult", "clip_grad_norm")
SEED_RANGE = 2 ** 32  # numpy's


class NonFinite(RuntimeError):
    pass


class Interrupted(BaseException):
    """SIGINT or SIGTERM: a BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class HelpFormatter(argparse.HelpFormatter):
    """Each default shown once: appended to the help unless the help states it already, and
    not for None (the help says what happens then) nor for switches, which are off unless given."""

    def _get_help_string(self, action):
        text = action.help or ""
        switch_off = action.nargs == 0 and action.default is False
        if action.default is None or action.default == argparse.SUPPRESS or switch_off or "(default" in text:
            return text
        return f"{text} (default: %(default)s)"

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # flags in a help stay whole


def build_parser():
    p = argparse.ArgumentParser(
        usage="%(prog)s [options]", formatter_class=HelpFormatter,
        description="Multi-task SegNet on CityScapes (segmentation + depth) with AdaTask and friends. "
                    "Switches (flags without a value) are off unless given.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=data_source.DATASETS, default=None,
                      help="default: cityscapes if dataset/cityscapes holds the release, else synthcity")
    data.add_argument("--data-path", default=None, metavar="DIR",
                      help="a dataset root in the release layout (real or SynthCity)")
    data.add_argument("--image-size", default=None, metavar="HxW",
                      help="SynthCity only: the size it generates, multiples of 32 (default 128x256)")
    data.add_argument("--synthcity-train", type=int, default=synthcity.DEFAULT_N_TRAIN, metavar="N",
                      help="SynthCity only: generated training samples")
    data.add_argument("--synthcity-val", type=int, default=synthcity.DEFAULT_N_VAL, metavar="N",
                      help="SynthCity only: generated validation samples")
    data.add_argument("--classes", type=int, default=7, choices=CLASS_COUNTS, help="segmentation classes")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                      help="random scale-crop and flip of the reference protocol")
    data.add_argument("--depth-rule", default="divide", choices=DEPTH_RULES,
                      help="depth under zoom: divide by the scale (reference code) or multiply (inverse depth)")

    model = p.add_argument_group("model")
    model.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS,
                       help=f"tasks to train (default: {' '.join(TASKS)}); one task: a single-task baseline "
                            f"(the same network minus the other branch)")
    model.add_argument("--arch", default="mtan", choices=list(MODELS), help="network")
    model.add_argument("--width-mult", type=float, default=1.0, metavar="X", help="channel multiplier")

    optimisation = p.add_argument_group("optimisation")
    optimisation.add_argument("--method", default="adam_with_adatask", choices=list(OPTIMIZERS), help="optimizer")
    optimisation.add_argument("--epochs", type=int, default=200, metavar="N", help="training epochs")
    optimisation.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per step")
    optimisation.add_argument("--lr", type=float, default=1e-4, metavar="X", help="learning rate")
    optimisation.add_argument("--lr-step", type=int, default=100, metavar="N",
                              help="StepLR: epochs between learning-rate decays")
    optimisation.add_argument("--lr-gamma", type=float, default=0.5, metavar="X",
                              help="StepLR: factor applied every --lr-step epochs")
    optimisation.add_argument("--seed", type=int, default=42, metavar="N",
                              help="seed of the initialisation, the augmentation and the data order")
    optimisation.add_argument("--clip-grad-norm", type=float, default=None, metavar="X",
                              help="clip the total norm of the final update gradient to X (every method alike)")

    methods = p.add_argument_group("methods", "--<method>-<option> flags apply only to that --weighting method")
    methods.add_argument("--weighting", default="ew", choices=list(WEIGHTINGS), help="multi-task gradient method")
    add_weighting_flags(methods)

    run_folder = p.add_argument_group("run folder and logging")
    run_folder.add_argument("--out", default="runs", metavar="DIR", help="parent folder of run folders")
    run_folder.add_argument("--name", default=None,
                            help="run folder name (default <method>-<weighting>-s<seed>-<timestamp>)")
    run_folder.add_argument("--resume", default=None, metavar="RUN_DIR",
                            help="continue an interrupted run from its last good checkpoint")
    run_folder.add_argument("--baseline", default=None, metavar="FILE",
                            help="JSON of single-task miou, pix_acc, abs_err, rel_err for Δm (default: the "
                                 "published 7-class row, for the real 7-class 128x256 release only)")
    run_folder.add_argument("--diagnostics-every", type=int, default=50, metavar="N",
                            help="log task-gradient cosine, norm ratio and method weights every N steps (runs "
                                 "that compute per-task gradients; others with --diagnostics)")
    run_folder.add_argument("--diagnostics", action="store_true", default=False,
                            help="also log the diagnostics for runs that do not compute per-task gradients (a "
                                 "plain optimizer with a loss-only weighting): the K per-task gradients are "
                                 "computed on the diagnostic steps only; the update still comes from the summed "
                                 "backward, so results do not change; costs about K extra backward passes every "
                                 "--diagnostics-every steps")
    run_folder.add_argument("--track-au", action="store_true",
                            help="track per-task update dominance (AU/rAU) of every shared layer: au.csv and "
                                 "TensorBoard; under a plain optimizer it costs about what AdaTask costs")

    performance = p.add_argument_group("performance")
    performance.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    performance.add_argument("--threads", type=int, default=None, metavar="N",
                             help="torch threads (default: torch's, one per core); OMP_NUM_THREADS, when set, "
                                  "overrides it. Give 1 when several processes share the CPU")
    performance.add_argument("--num-workers", type=int, default=min(4, (os.cpu_count() or 2) // 2), metavar="N",
                             help="DataLoader worker processes (0: load in the main process)")
    performance.add_argument("--in-memory", action="store_true",
                             help="load the whole training and test sets into RAM once (small machines, fast GPUs)")
    performance.add_argument("--amp", action="store_true", help="bf16 autocast for forward and losses")
    performance.add_argument("--channels-last", action="store_true",
                             help="channels-last memory format for model and inputs")
    performance.add_argument("--compile", action="store_true", help="torch.compile the model (slow first step)")
    return p


def explicit_flags(argv):
    """The settings given on the command line (not defaulted): what a --resume must check."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def check_values(parser, args, fail):
    """Values a run accepts, whether from the command line or from a config.json it resumes."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.type is float and value is not None and not math.isfinite(value):
            fail(f"{action.option_strings[0]} {value}: expected a finite number")
    for key in AT_LEAST_ONE:
        if getattr(args, key) < 1:
            fail(f"--{key.replace('_', '-')} {getattr(args, key)}: must be at least 1")
    for key in POSITIVE:
        value = getattr(args, key)
        if value is not None and not value > 0:
            fail(f"--{key.replace('_', '-')} {value}: must be positive")
    if args.num_workers < 0:
        fail(f"--num-workers {args.num_workers}: must be >= 0")
    if args.threads is not None and args.threads < 1:
        fail(f"--threads {args.threads}: must be at least 1")
    if not 0 <= args.seed < SEED_RANGE:
        fail(f"--seed {args.seed}: expected an integer in 0..{SEED_RANGE - 1}")
    if len(set(args.tasks)) != len(args.tasks):
        fail("--tasks: each task at most once")


def warn_ignored(args):
    """Flags that do nothing in this run. Warned about, not refused: sweeps pass one set of
    flags to every run, single-task baselines included."""
    warnings = []
    own = {flag_dest(args.weighting, option) for option in WEIGHTINGS[args.weighting].OPTIONS}
    for method, cls in WEIGHTINGS.items():
        for option in cls.OPTIONS:
            dest = flag_dest(method, option)
            if dest in args.explicit and dest not in own:
                warnings.append(f"--{dest.replace('_', '-')} applies to --weighting {method}; "
                                f"ignored with --weighting {args.weighting}")
    if len(args.tasks) == 1:
        if args.weighting != "ew":
            warnings.append(f"--weighting {args.weighting} combines several tasks; with the single task "
                            f"{args.tasks[0]} it has nothing to combine")
        if args.baseline is not None:
            warnings.append(f"--baseline {args.baseline} serves Δm, which a single-task run does not report; ignored")
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explicit = explicit_flags(argv)
    check_values(parser, args, parser.error)
    args.tasks = [t for t in TASKS if t in args.tasks]  # canonical order: outputs follow it
    warn_ignored(args)
    return args


def settings_of(args):
    """config.json's "settings": every flag except the environment's."""
    return {k: v for k, v in vars(args).items() if k != "explicit" and k not in run_config.ENVIRONMENT_FLAGS}


def resumed_args(args):
    """The settings of the run in --resume, with the flags a resume may change applied and
    the environment of this call. A flag given now that changes results is refused, naming
    the setting; so is a config.json that is malformed or holds values no run accepts."""
    run_dir = Path(args.resume)
    path = run_dir / run_record.CONFIG
    if not path.exists():
        raise run_record.RunFolderError(f"--resume {run_dir}: no {run_record.CONFIG} there; not a run folder")
    config = run_config.read_config(path)
    parser = build_parser()
    settings = run_config.check_settings(config, parser, path)
    if (run_dir / run_record.SUMMARY).exists():
        if "epochs" not in args.explicit:
            raise run_record.RunFolderError(
                f"--resume {run_dir}: the run is finished ({run_record.SUMMARY} exists); add --epochs N with N above "
                f"its {settings['epochs']} epochs to extend it")
        if args.epochs <= settings["epochs"]:
            raise run_record.RunFolderError(
                f"--resume {run_dir} --epochs {args.epochs}: the run is finished with {settings['epochs']} epochs; "
                f"--epochs must be larger to extend it")
    for key in sorted(args.explicit - run_config.FREE_ON_RESUME):
        if settings.get(key) != getattr(args, key):
            raise run_record.RunFolderError(
                f"--resume {run_dir}: the run was made with --{key.replace('_', '-')} {settings.get(key)}; "
                f"this call gives {getattr(args, key)}, which would change its results")
    for key in (args.explicit & run_config.FREE_ON_RESUME) | set(run_config.ENVIRONMENT_FLAGS):
        settings[key] = getattr(args, key)
    resumed = argparse.Namespace(**settings)
    resumed.resume, resumed.explicit = str(run_dir), set()

    def fail(message):
        raise run_config.ConfigError(f"{path}: {message}")

    check_values(parser, resumed, fail)
    return resumed, config


def result_settings(args):
    """The settings a checkpoint must agree with to be continued."""
    return run_config.result_settings(settings_of(args))


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit():
    repo = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class Experiment:
    """Everything one run needs, built from the flags (or from the run folder it resumes)."""

    def __init__(self, args):
        """For a new run, everything is checked before its folder is made; a resumed run's
        folder must be owned by this process already (run_lock.acquire)."""
        config = None
        if args.resume:
            args, config = resumed_args(args)
        self.args = args
        self.extending = config is not None and (Path(args.resume) / run_record.SUMMARY).exists()
        self.tasks = tuple(args.tasks)
        self.device = pick_device(args.device)
        if config is None:
            self.source = data_source.resolve(args.dataset, args.data_path, args.image_size, args.classes,
                                              args.synthcity_train, args.synthcity_val)
        else:  # the data the run started on, even if the default data has changed since
            self.source = data_source.open_release(config["data"]["root"], args.classes)
        self.data_identity = data_identity(self.source.root)
        if config is not None:
            check_same_data(Path(args.resume), config["data"].get("identity"), self.data_identity,
                            f"{run_record.CONFIG} records")
        ds = dict(root=self.source.root, num_classes=args.classes, seed=args.seed, in_memory=args.in_memory)
        self.train_set = CityscapesNpy(split="train", augment=args.augment, depth_rule=args.depth_rule, **ds)
        self.test_set = CityscapesNpy(split="val", **ds)
        self.image_size = self.train_set.image_size
        if len(self.tasks) == len(TASKS):
            self.baseline, self.baseline_name, self.baseline_reason = select_baseline(
                args.classes, self.image_size, self.source.synthetic, args.baseline)
        else:
            self.baseline, self.baseline_name, self.baseline_reason = None, None, "single-task run"
        seed_everything(args.seed)
        self.model = build_model(args.arch, args.classes, args.width_mult, self.tasks).to(self.device)
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if args.compile else self.model
        shared, own = self.model.shared_parameters(), self.model.task_specific_parameters()
        self.optimizer = build_optimizer(args.method, shared, own, args.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, args.lr_step, args.lr_gamma)
        self.weighting = build_weighting_from_args(args, self.tasks)
        self.tracker = DominanceTracker(self.optimizer, self.model.shared_layers(), len(self.tasks)) \
            if args.track_au else None
        self.step = MultiTaskStep(self.optimizer, self.weighting, shared, own, args.clip_grad_norm, self.tracker)
        self.config = self.make_config(config)
        if config is None:
            name = args.name or f"{args.method}-{args.weighting}-s{args.seed}-{datetime.now():%Y%m%d-%H%M%S-%f}"
            self.run_dir, self.ownership = new_run_dir(Path(args.out) / name)
        else:
            self.run_dir, self.ownership = Path(args.resume), None

    def make_config(self, previous):
        config = {
            "schema_version": run_config.SCHEMA_VERSION,
            "settings": settings_of(self.args),
            "data": {"name": self.source.name, "root": str(self.source.root), "synthetic": self.source.synthetic,
                     "synthcity": self.source.metadata, "image_size": list(self.image_size),
                     "train_samples": len(self.train_set), "val_samples": len(self.test_set),
                     "identity": self.data_identity},
            "baseline": {"name": self.baseline_name, "reason": self.baseline_reason, "metrics": self.baseline},
            "tasks": list(self.tasks),
            "weighting": {"name": self.args.weighting, "options": self.weighting.options()},
            "environment": self.environment(),
            "parameters": self.model.parameter_counts(),
            "git_commit": git_commit(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
            "started": datetime.now().isoformat(timespec="seconds"),
        }
        if previous is not None:
            config["started"] = previous["started"]
            config["resumed"] = previous.get("resumed", []) + [datetime.now().isoformat(timespec="seconds")]
        return config

    def environment(self):
        """Where the run runs (never compared: a resume may move it)."""
        return {**{key: getattr(self.args, key) for key in run_config.ENVIRONMENT_FLAGS},
                "device": str(self.device), "host": platform.node(), "pid": os.getpid(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "torch_threads": torch.get_num_threads()}

    def loader(self, dataset, epoch, shuffle):
        # The shuffle order depends only on (seed, epoch): a rerun or a resumed run repeats it.
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(self.args.seed * 100_003 + epoch)) \
            if shuffle else None
        dataset.set_epoch(epoch)
        return DataLoader(dataset, batch_size=self.args.batch_size, sampler=sampler,
                          num_workers=self.args.num_workers, pin_memory=self.device.type == "cuda",
                          worker_init_fn=leave_stopping_to_the_run)

    def to_device(self, batch):
        image, label, depth = (t.to(self.device, non_blocking=True) for t in batch)
        if self.args.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        targets = {"semantic": label, "depth": depth}
        return image, [targets[t] for t in self.tasks]

    def predict_and_losses(self, image, targets):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.amp):
            preds = self.forward(image)
            losses = [LOSSES[t](p, y).float() for t, p, y in zip(self.tasks, preds, targets)]
        return preds, losses

    def checkpoint_state(self, next_epoch, step, rows, au_rows):
        return {
            "epoch": next_epoch, "step": step, "rows": rows, "au_rows": au_rows,
            "schema_version": run_config.SCHEMA_VERSION, "settings": result_settings(self.args),
            "data_identity": self.data_identity,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "weighting": self.weighting.state_dict(),
            "tracker": self.tracker.state_dict() if self.tracker else None, "rng": run_record.rng_state(),
        }

    def restore(self):
        """(first epoch, global step, metrics rows, au.csv rows) from the last good checkpoint."""
        state, messages = run_record.load_checkpoint(self.run_dir, map_location=self.device)
        for message in messages:
            print(f"warning: {message}; continuing from {run_record.PREVIOUS}", flush=True)
        if state is None:
            print(f"{self.run_dir}: no checkpoint yet; starting from epoch 1", flush=True)
            return 0, 0, [], []
        expected = result_settings(self.args)
        recorded = run_config.settings({"schema_version": state.get("schema_version", 1),
                                        "settings": state["settings"]})
        for key in sorted(set(expected) | set(recorded)):
            if expected.get(key) != recorded.get(key):
                raise run_record.RunFolderError(
                    f"--resume {self.run_dir}: the checkpoint was made with {key}={recorded.get(key)!r}, "
                    f"the run's config.json says {expected.get(key)!r}; refusing to mix them")
        check_same_data(self.run_dir, state.get("data_identity"), self.data_identity, "its checkpoint records")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.weighting.load_state_dict(state["weighting"])
        if self.tracker:
            self.tracker.load_state_dict(state["tracker"])
        run_record.set_rng_state(state["rng"])
        print(f"resuming {self.run_dir} at epoch {state['epoch'] + 1}", flush=True)
        return state["epoch"], state["step"], state["rows"], state.get("au_rows", [])


def leave_stopping_to_the_run(worker_id):
    """A DataLoader worker is forked with the run's signal handlers; Ctrl-C reaches the whole
    process group, so a worker would print its own traceback. The run stops its workers itself
    (and they die with it: run_lock's PDEATHSIG). A batch in flight when the run stops leaves
    the worker's file-descriptor server (multiprocessing.resource_sharer) with a reset
    connection, which it would report as a traceback: a hang-up is no error here."""
    for sig in (signal.SIGINT, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.excepthook = _silent_on_hang_up


def _silent_on_hang_up(kind, value, traceback):
    if not issubclass(kind, (ConnectionError, EOFError)):
        sys.__excepthook__(kind, value, traceback)


def check_same_data(run_dir, recorded, found, where):
    """A resumed run continues on the data it started on: the identity its config or checkpoint
    records must be the identity of the data found now (a missing record: a run older than
    the record, nothing to compare)."""
    if recorded is not None and recorded != found:
        raise run_record.RunFolderError(
            f"--resume {run_dir}: {where} the data {json.dumps(recorded, sort_keys=True)[:300]}, but its data "
            f"folder now holds {json.dumps(found, sort_keys=True)[:300]}; the data changed or config.json's "
            f"data.root was edited; refusing to mix them")


def new_run_dir(run_dir):
    """Create <out>/<name> and own it in one step (run_lock), then refuse it, still owned, if it
    holds a run already. (run_dir, ownership)."""
    try:
        ownership = run_lock.acquire(run_dir, create=True)
    except OSError as e:
        raise run_record.RunWriteError(f"cannot create the run folder {run_dir}: {e.strerror or e}") from None
    try:
        run_record.check_new_run_dir(run_dir, run_lock.run_files(run_dir))
    except BaseException:
        ownership.release()
        raise
    return run_dir, ownership


def train_epoch(exp, epoch, writer, step):
    exp.model.train()
    meter = SplitMeter(exp.args.classes, exp.tasks, exp.device)
    loss_sums = torch.zeros(len(exp.tasks), dtype=torch.float64)
    bar = tqdm(exp.loader(exp.train_set, epoch, shuffle=True), desc=f"epoch {epoch + 1} train", leave=False,
               dynamic_ncols=True, mininterval=1.0, disable=None)
    for batch in bar:
        image, targets = exp.to_device(batch)
        preds, losses = exp.predict_and_losses(image, targets)
        values = [l.item() for l in losses]
        bad = [(t, v) for t, v in zip(exp.tasks, values) if not np.isfinite(v)]
        if bad:
            raise NonFinite(f"non-finite loss in epoch {epoch + 1}, step {step}: "
                            + ", ".join(f"loss_{t} is {v}" for t, v in bad))

        def losses_now(image=image, targets=targets):
            return torch.stack(exp.predict_and_losses(image, targets)[1])

        ctx = StepContext(losses=None, epoch=epoch, step=step, lr=exp.optimizer.param_groups[0]["lr"],
                          losses_after=losses_after_fn(exp.model, losses_now, exp.model.shared_parameters()))
        want = step % exp.args.diagnostics_every == 0 and (exp.step.computes_task_gradients or exp.args.diagnostics)
        info = exp.step(losses, ctx, want_diagnostics=want)
        meter.update([p.detach() for p in preds], targets, values)
        loss_sums += torch.tensor(values, dtype=torch.float64)
        for task, value in zip(exp.tasks, values):
            writer.add_scalar(f"train_step/loss_{task}", value, step)
        for key, value in info.items():
            writer.add_scalar(f"diagnostics/{task_pair_names(key, exp.tasks)}", value, step)
        bar.set_postfix({t: f"{v:.4f}" for t, v in zip(exp.tasks, values)})
        step += 1
    exp.weighting.end_epoch(epoch, loss_sums / max(len(bar), 1))
    return meter.compute(), step


def task_pair_names(key, tasks):
    """'cosine/0-1' → 'cosine/semantic-depth', 'weight/1' → 'weight/depth'."""
    kind, indices = key.split("/")
    return f"{kind}/" + "-".join(tasks[int(i)] for i in indices.split("-"))


@torch.no_grad()
def evaluate(exp):
    exp.model.eval()
    meter = SplitMeter(exp.args.classes, exp.tasks, exp.device)
    panels = []
    for batch in tqdm(exp.loader(exp.test_set, 0, shuffle=False), desc="test", leave=False, dynamic_ncols=True,
                      mininterval=1.0, disable=None):
        image, targets = exp.to_device(batch)
        preds, losses = exp.predict_and_losses(image, targets)
        meter.update(preds, targets, [l.item() for l in losses])
        for i in range(min(NUM_PANELS - len(panels), len(image))):
            predicted = {t: (p[i].argmax(0) if t == "semantic" else p[i, 0].float()).cpu().numpy()
                         for t, p in zip(exp.tasks, preds)}
            true = {t: (y[i] if t == "semantic" else y[i, 0]).cpu().numpy() for t, y in zip(exp.tasks, targets)}
            panels.append(sample_panel(image[i].float().cpu().numpy(), predicted, true, exp.args.classes))
    return meter.compute(), panels


def check_finite(exp, epoch, test_metrics):
    """The losses are checked every step, but the last step can still turn the weights NaN,
    and only the test metrics would show it. Checked once per epoch, before anything of it
    is written."""
    tensors = [*exp.model.parameters(), *(b for b in exp.model.buffers() if b.is_floating_point())]
    if not all(torch.isfinite(t).all() for t in tensors):
        raise NonFinite(f"the network's weights became NaN or infinite in epoch {epoch + 1} (the losses were "
                        f"still finite): the run diverged")
    # class_iou, a dict of ratios of counts, is finite or None by construction
    bad = [f"{k} is {v}" for k, v in test_metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise NonFinite(f"non-finite test metrics after epoch {epoch + 1}: {', '.join(bad)}")


def run(exp):
    args = exp.args
    first_epoch, step, rows, au_rows = exp.restore() if args.resume else (0, 0, [], [])
    if args.resume:  # the files as the checkpoint knew them: epochs run after it are dropped
        for stale in run_record.stale_temporaries(exp.run_dir):
            stale.unlink()
        run_record.write_metrics(exp.run_dir, rows)
        if exp.tracker:
            write_au(exp, au_rows)
        if exp.extending:  # a finished run given more --epochs: unfinished again until they are done
            (exp.run_dir / run_record.SUMMARY).unlink()
    run_record.write_json(exp.run_dir / run_record.CONFIG, exp.config)
    print(console.header(
        exp.run_dir, f"{args.method} + {args.weighting}, seed {args.seed}, {'+'.join(exp.tasks)}",
        f"{exp.source.name} {exp.image_size[0]}x{exp.image_size[1]}, {len(exp.train_set)} train / "
        f"{len(exp.test_set)} test, {args.classes} classes",
        f"{args.arch} x{args.width_mult}, {exp.model.parameter_counts()['total'] / 1e6:.2f} M parameters, "
        f"{exp.device}, {console.thread_count(torch.get_num_threads())}",
        exp.baseline_reason if exp.baseline is None and len(exp.tasks) > 1 else None), flush=True)
    from torch.utils.tensorboard import SummaryWriter  # a quarter second: not for --help or bad flags

    # purge_step drops the per-step events a killed run logged after its last checkpoint
    writer = SummaryWriter(log_dir=str(exp.run_dir), purge_step=step if args.resume else None)
    if first_epoch == 0:
        tensorboard_log.write_layout(writer, exp.tasks, with_delta_m=exp.baseline is not None)
    try:
        for epoch in range(first_epoch, args.epochs):
            start = time.perf_counter()
            lr = exp.optimizer.param_groups[0]["lr"]
            train_metrics, step = train_epoch(exp, epoch, writer, step)
            test_metrics, panels = evaluate(exp)
            check_finite(exp, epoch, test_metrics)
            exp.scheduler.step()
            if exp.baseline is not None:
                test_metrics["delta_m"] = delta_m(test_metrics, exp.baseline)
            elif len(exp.tasks) == len(TASKS):
                test_metrics["delta_m"] = None
            row = {"epoch": epoch, "lr": lr, "seconds": time.perf_counter() - start,
                   "train": train_metrics, "test": test_metrics}
            rows.append(row)
            run_record.write_metrics(exp.run_dir, rows)
            if exp.tracker:
                au_rows += log_dominance(writer, exp, epoch)
                write_au(exp, au_rows)
            run_record.save_checkpoint(exp.run_dir, exp.checkpoint_state(epoch + 1, step, rows, au_rows))
            tensorboard_log.log_epoch(writer, row, panels)
            tqdm.write(console.epoch_line(row, rows, args.epochs))
    except BaseException:  # a stopped run keeps the events it logged
        with contextlib.suppress(OSError):
            writer.close()
        raise
    summary = run_record.summarize(rows, exp.baseline, exp.baseline_name)
    run_record.write_json(exp.run_dir / run_record.SUMMARY, summary)
    log_hparams(writer, exp, summary)
    writer.close()
    print(console.final_table(summary, exp.baseline, exp.baseline_name))
    print(f"results in {console.shown_path(exp.run_dir)}; curves: "
          f"{console.tool_command('tensorboard', '--logdir', console.shown_path(exp.run_dir.parent))}")
    return exp.run_dir


def write_au(exp, au_rows):
    with run_record.atomic_file(exp.run_dir / AU_CSV) as f:
        write_au_csv(f, au_rows)


def log_dominance(writer, exp, epoch):
    """Per shared layer (input → output) and task: mean rAU to TensorBoard; returns the epoch's au.csv rows."""
    rows = exp.tracker.layer_summary()
    tensorboard_log.log_dominance(writer, rows, exp.tasks, epoch)
    return au_csv_rows(rows, epoch, exp.tasks)


def log_hparams(writer, exp, summary):
    """TensorBoard's HParams tab: what tells the run apart, what a comparison holds equal, and
    its final and last-10 metrics."""
    args = exp.args
    identity = {"data": f"{exp.source.name} {exp.image_size[0]}x{exp.image_size[1]}", "method": args.method,
                "weighting": args.weighting, "seed": args.seed, "tasks": "+".join(exp.tasks)}
    setup = {key: getattr(args, key) for key in ("classes", "arch", "width_mult", "epochs", "batch_size", "lr",
                                                 "augment")}
    choices = {"method": list(OPTIMIZERS), "weighting": list(WEIGHTINGS),
               "tasks": ["+".join(TASKS), *TASKS], "arch": list(MODELS)}
    tensorboard_log.log_hparams(writer, identity, setup, choices, summary, args.epochs)


def continue_command(run_dir):
    """The exact command that continues a run, with the interpreter that ran this one."""
    main_file = Path(__file__)
    return console.python_command(console.shown_path(main_file), "--resume", console.shown_path(run_dir))


def where_it_stands(exp):
    """What a stopped run kept, and how to continue it."""
    if exp is None or not (exp.run_dir / run_record.CONFIG).exists():
        return "the run had not started; nothing was written"
    kept = exp.run_dir / run_record.CHECKPOINT
    done = f"the last good checkpoint is {kept}" if kept.exists() else "no epoch had finished"
    return f"{done}; continue with: {continue_command(exp.run_dir)}"


def raise_on_signals():
    """SIGINT, SIGTERM and SIGUSR2 (Ctrl-C, kill, Slurm and Ray preemption) raise Interrupted in
    the main thread. Returns the previous handlers."""
    def handler(signum, frame):
        for sig in EXIT_SIGNAL:  # a second signal (Ctrl-C twice, a launcher passing it on) must not
            signal.signal(sig, signal.SIG_IGN)  # interrupt the clean stop with a traceback
        raise Interrupted(signum)
    return {sig: signal.signal(sig, handler) for sig in EXIT_SIGNAL}


def set_threads(threads):
    """OMP_NUM_THREADS, when set, wins over --threads: a launcher that pins it knows the machine."""
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        threads = int(from_env)
    if threads is not None:
        torch.set_num_threads(threads)


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    previous_handlers = raise_on_signals()
    exp = ownership = None
    try:
        run_lock.exit_with_parent_from_env()  # launchers such as scripts/sweep.sh set MTL_PARENT_PID
        if args.resume:
            if not Path(args.resume).is_dir():
                raise run_record.RunFolderError(f"--resume {args.resume}: no such run folder")
            ownership = run_lock.acquire(Path(args.resume))  # before its files are read
        # bad input fails here, before any training, with a message instead of a traceback
        exp = Experiment(args)
        ownership = ownership or exp.ownership
        run(exp)
        return 0
    except run_lock.RunBusy as e:
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
    except run_record.RunWriteError as e:
        print(f"error: {e}. Nothing written before it was lost; {where_it_stands(exp)} once the folder is "
              f"writable again.", file=sys.stderr)
        return EXIT_WRITE
    except Interrupted as e:
        print(f"\nstopped by {e}; {where_it_stands(exp)}", file=sys.stderr)
        return EXIT_SIGNAL[e.signum]
    finally:
        if ownership is not None:
            ownership.release()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
