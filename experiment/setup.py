"""One experiment built from the flags (or from the run folder it resumes): data, tasks, model,
optimizer, weighting method, training engine and run folder (docs/design.md, "Architecture")."""
import json
import os
import platform
import random
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from data import source as data_source
from data import validation_split
from data.cityscapes import CityscapesNpy
from data.file_stats import describe_changes, file_stats
from data.identity import data_identity
from data.layout import IMAGE_DIR
from evaluation import run_config, run_record, selection, weak_baseline
from evaluation.delta_m import load_val_baseline, select_baseline
from experiment.flags import result_settings, resumed_args, setting_definitions, settings_of
from experiment.world import SINGLE, ExtraBatches, ShardedBatches, collate_shard
from models import build_model
from models.synced_batchnorm import synchronise_batchnorm
from optim import build_optimizer
from optim.dominance import DominanceTracker
from optim.engine import TrainingEngine
from optim.weighting.cli import build_weighting_from_args
from runfolder import atomic, lease
from runfolder.files import DATA_FILES, LOCK, PREVIOUS_CHECKPOINT
from tasks import TaskSettings, build_tasks

EXTRA_BATCHES_STREAM = 0x5D3  # the extra batches' generator: seeded by (seed, epoch, this)


def pick_device(name, world=SINGLE):
    """The --device; under torchrun, "auto" and "cuda" mean this process's GPU, LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and world.size > 1:
        if device.index is not None:
            raise ValueError(f"--device {name}: under torchrun each process takes its own GPU (LOCAL_RANK); "
                             f"give --device cuda or auto, and choose GPUs with CUDA_VISIBLE_DEVICES")
        device = torch.device("cuda", world.local_rank)
    return device


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit():
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class Experiment:
    """Everything one run needs, built from the flags (or from the run folder it resumes)."""

    def __init__(self, args, world=SINGLE):
        """For a new run, everything is checked before its folder is made; a resumed run's
        folder must be owned by this process already (runfolder.lease.acquire). Under torchrun
        (`world`, experiment/world.py) rank 0 reads the run folder and resolves the data, and
        hands both to the others; rank 0 alone makes the folder."""
        self.world = world
        args, config, self.extending, self.source, self.data_identity = world.from_main(lambda: self._read(args))
        self.args = args
        # a checkpoint belongs to the run config.json records, which a resume's --epochs may since change
        self.recorded_epochs = config["settings"]["epochs"] if config is not None else None
        self.tasks = build_tasks(args.tasks, TaskSettings(classes=args.classes, depth_rule=args.depth_rule))
        self.task_names = tuple(task.name for task in self.tasks)
        self.device = pick_device(args.device, world)
        self.dtype = getattr(torch, args.dtype)
        ds = dict(root=self.source.root, tasks=self.tasks, seed=args.seed, in_memory=args.in_memory)
        self.train_set = CityscapesNpy(split="train", augment=args.augment, resampling=args.image_resampling, **ds)
        self.test_set = CityscapesNpy(split="val", **ds)  # the release's val/ folder is the test split
        self.val_set = self._hold_out_validation() if args.val_fraction else None
        world.check_batches(args.batch_size, {"train": len(self.train_set), "val": len(self.test_set),
                                              **({"validation": len(self.val_set)} if self.val_set else {})})
        self._empty_batch = None
        self.image_size = self.train_set.image_size
        self.val_baseline = None
        self.baseline_warning = None  # a baseline file worse than the trivial predictors (evaluation/weak_baseline.py)
        if len(self.tasks) > 1:
            self.baseline, self.baseline_name, self.baseline_reason = select_baseline(
                self.task_names, args.classes, self.image_size, self.source.name, args.baseline)
            if self.val_set and args.baseline is not None:
                self.val_baseline = load_val_baseline(args.baseline, self.task_names, self.split_settings())
            if args.baseline is not None:
                self.baseline_warning = weak_baseline.warning_of_file(args.baseline, self.task_names)
        else:
            self.baseline, self.baseline_name, self.baseline_reason = None, None, "single-task run"
        # the --select-by objective, checked before the run folder is made
        self.objective = selection.resolve(args.select_by, self.val_baseline is not None, self.task_names) \
            if self.val_set else None
        seed_everything(args.seed)
        self.model = build_model(args.arch, self.tasks, args.width_mult).to(self.device, self.dtype)
        if world.size > 1:
            synchronise_batchnorm(self.model)
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if args.compile else self.model
        self.optimizer = build_optimizer(args.method, self.model.shared_parameters(),
                                         self.model.task_specific_parameters(), args.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, args.lr_step, args.lr_gamma)
        self.weighting = build_weighting_from_args(args, self.task_names)
        self.tracker = DominanceTracker(self.optimizer, self.model.shared_layers(), len(self.tasks)) \
            if args.track_au else None
        self.engine = TrainingEngine(self.model, self.optimizer, self.weighting, self.predict_and_losses,
                                     self.task_names, args.clip_grad_norm, self.tracker, args.diagnostics_every,
                                     diagnose_plain=args.diagnostics)
        self.config = self.make_config(config)
        self.ownership = None  # rank 0's, of a new run folder
        self.run_dir = world.from_main(lambda: self._own_run_dir(config))
        world.from_main(lambda: keep_data_files(self.run_dir, self.source.root, self.tasks, resumed=config is not None))

    def _hold_out_validation(self):
        """The validation split (data/validation_split.py), unaugmented, and the training set
        without it. Its hash becomes the setting val_split_sha256; a resumed run's must match."""
        args, n_train = self.args, len(self.train_set)
        held = validation_split.held_out(n_train, args.val_fraction, args.val_seed)
        digest = validation_split.split_hash(held)
        recorded = getattr(args, validation_split.HASH_SETTING, None)
        if recorded is not None and recorded != digest:
            raise run_record.RunFolderError(
                f"--resume {args.resume}: the run holds out the validation samples of {validation_split.HASH_SETTING} "
                f"{recorded}, but --val-fraction {args.val_fraction} --val-seed {args.val_seed} of its "
                f"{n_train} training samples now give {digest}; refusing to train on another split")
        setattr(args, validation_split.HASH_SETTING, digest)
        whole = self.train_set
        self.train_set = validation_split.Subset(whole, validation_split.remaining(n_train, held))
        return validation_split.Subset(whole.without_augmentation(), held)

    def split_settings(self):
        """The settings that name the validation split, as a baseline's setup records them."""
        return {key: getattr(self.args, key)
                for key in ("val_fraction", "val_seed", validation_split.HASH_SETTING)}

    @staticmethod
    def _read(args):
        """(args, config, extending, data source, data identity): for a resumed run, its
        settings and data from its folder; for a new one, the flags' data (built if needed)."""
        if not args.resume:
            source = data_source.resolve(args.dataset, args.data_path, args.image_size, args.classes,
                                         args.synthcity_train, args.synthcity_val)
            return args, None, False, source, data_identity(source.root)
        args, config = resumed_args(args)
        finished = (Path(args.resume) / run_record.SUMMARY).exists()
        if finished:  # extended only when its files agree, or the longer run would carry the disagreement on
            try:
                run_record.check_finished(Path(args.resume), config)
            except run_record.RunError as e:
                raise run_record.RunFolderError(f"--resume: {e}; refusing to extend it") from None
        # the data the run started on, even if the default data has changed since
        source = data_source.open_release(config["data"]["root"], args.classes)
        identity = data_identity(source.root)
        check_same_data(Path(args.resume), config["data"].get("identity"), identity, f"{run_record.CONFIG} records")
        return args, config, finished, source, identity

    def _own_run_dir(self, config):
        """The run folder: the resumed one, or a new one that this process makes and owns."""
        if config is not None:
            return Path(self.args.resume)
        args = self.args
        name = args.name or f"{args.method}-{args.weighting}-s{args.seed}-{datetime.now():%Y%m%d-%H%M%S-%f}"
        run_dir, self.ownership = new_run_dir(Path(args.out) / name)
        return run_dir

    def make_config(self, previous):
        data = {"name": self.source.name, "root": str(self.source.root), "synthetic": self.source.synthetic,
                "synthcity": self.source.metadata, "image_size": list(self.image_size),
                "train_samples": len(self.train_set), "val_samples": len(self.test_set), "identity": self.data_identity}
        baseline = {"name": self.baseline_name, "reason": self.baseline_reason, "metrics": self.baseline}
        if self.val_set:  # val_samples is the test split's count, as before the validation split existed
            data["validation_samples"] = len(self.val_set)
            baseline["val_metrics"] = self.val_baseline
        if self.baseline_warning is not None:  # summary.json repeats it: summary_of_record reads it here
            baseline["trivial_warning"] = self.baseline_warning
        return run_record.new_config(
            settings_of(self.args), data, self.task_names, baseline=baseline,
            weighting={"name": self.args.weighting, "options": self.weighting.options()},
            environment=self.environment(), parameters=self.model.parameter_counts(), git_commit=git_commit(),
            previous=previous)

    def environment(self):
        """Where the run runs (never compared: a resume may move it)."""
        return {**{key: getattr(self.args, key) for key in run_config.ENVIRONMENT_FLAGS},
                "device": str(self.device), "host": platform.node(), "pid": os.getpid(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "processes": self.world.size,
                "torch_threads": torch.get_num_threads()}

    def loader(self, dataset, epoch, shuffle):
        # The shuffle order depends only on (seed, epoch): a rerun or a resumed run repeats it,
        # and every process of a torchrun run cuts its shard from the same global batches.
        order = RandomSampler(dataset, generator=torch.Generator().manual_seed(self.args.seed * 100_003 + epoch)) \
            if shuffle else SequentialSampler(dataset)
        dataset.set_epoch(epoch)
        batches = ShardedBatches(order, self.args.batch_size, self.world.rank, self.world.size)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_shard,
                          num_workers=self.args.num_workers, pin_memory=self.device.type == "cuda",
                          worker_init_fn=leave_stopping_to_the_run)

    def extra_batches(self, epoch, steps):
        """The extra batches of --sdmgrad-batches N for an epoch of `steps` steps: an iterator of
        steps lists of N - 1 batches, or None for N = 1. Their samples, order and augmentation
        depend only on (seed, epoch), so a resumed run repeats them; under torchrun each process
        takes its shard of each global batch, as from the main loader."""
        per_step = getattr(self.weighting, "batches", 1) - 1
        if per_step < 1:
            return None
        seed = int(np.random.default_rng([self.args.seed, epoch, EXTRA_BATCHES_STREAM]).integers(2**62))
        batches = ExtraBatches(len(self.train_set), self.args.batch_size, steps, per_step, seed,
                               self.world.rank, self.world.size)
        self.train_set.set_epoch(epoch)
        loader = iter(DataLoader(self.train_set, batch_sampler=batches, collate_fn=collate_shard,
                                 num_workers=self.args.num_workers, pin_memory=self.device.type == "cuda",
                                 worker_init_fn=leave_stopping_to_the_run))
        return ([self.to_device(next(loader)) for _ in range(per_step)] for _ in range(steps))

    def to_device(self, batch):
        """(image, [target per task]) on the run's device, from the dataset's (image, {task: target}).
        None (this process's empty shard of a short last batch): an empty batch of the same
        layout, which still runs, joining every collective."""
        if batch is None:
            return self._empty_batch
        image, targets = self._to_device(batch)
        self._empty_batch = image[:0], [y[:0] for y in targets]
        return image, targets

    def _to_device(self, batch):
        image, targets = batch
        image = image.to(self.device, self.dtype, non_blocking=True)
        if self.args.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, [self._target_to_device(targets[name]) for name in self.task_names]

    def _target_to_device(self, target):
        if target.is_floating_point():
            return target.to(self.device, self.dtype, non_blocking=True)
        return target.to(self.device, non_blocking=True)

    def predict_and_losses(self, batch):
        """(predictions, loss terms (sum, count) per task) of a batch on the device: the
        engine's compute_losses (optim/engine.py)."""
        image, targets = batch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.amp):
            preds = self.forward(image)
            terms = [task.loss_terms(p, y) for task, p, y in zip(self.tasks, preds, targets)]
        return preds, [(total.to(self.dtype), count) for total, count in terms]

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
        """(first epoch, global step, metrics rows, au.csv rows) from the last good checkpoint
        (read by rank 0, received by the other processes of a torchrun run)."""
        state = self.world.from_main(self._read_checkpoint)
        if state is None:
            return 0, 0, [], []
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.weighting.load_state_dict(state["weighting"])
        if self.tracker:
            self.tracker.load_state_dict(state["tracker"])
        run_record.set_rng_state(state["rng"])
        print(f"resuming {self.run_dir} at epoch {state['epoch'] + 1}", flush=True)
        return state["epoch"], state["step"], state["rows"], state.get("au_rows", [])

    def _read_checkpoint(self):
        """The last good checkpoint's state, checked against the run's settings and data; None without one."""
        state, messages = run_record.load_checkpoint(self.run_dir, self.recorded_epochs,
                                                     map_location="cpu" if self.world.size > 1 else self.device)
        for message in messages:
            print(f"warning: {message}; continuing from {PREVIOUS_CHECKPOINT}", flush=True)
        if state is None:
            print(f"{self.run_dir}: no checkpoint yet; starting from epoch 1", flush=True)
            return None
        expected = result_settings(self.args)
        recorded = run_config.result_settings(run_config.settings({"settings": state["settings"]},
                                                                  setting_definitions()))
        for key in sorted(set(expected) | set(recorded)):
            if expected.get(key) != recorded.get(key):
                raise run_record.RunFolderError(
                    f"--resume {self.run_dir}: the checkpoint was made with {key}={recorded.get(key)!r}, "
                    f"the run's config.json says {expected.get(key)!r}; refusing to mix them")
        check_same_data(self.run_dir, state.get("data_identity"), self.data_identity, "its checkpoint records")
        if state["epoch"] > self.args.epochs:  # the loop would run no epoch and call the run finished
            raise run_record.RunFolderError(
                f"--resume {self.run_dir} --epochs {self.args.epochs}: its checkpoint has {state['epoch']} epochs "
                f"done already; give --epochs {state['epoch']} or more")
        return state


def leave_stopping_to_the_run(worker_id):
    """A DataLoader worker is forked with the run's signal handlers; Ctrl-C reaches the whole
    process group, so a worker would print its own traceback. The run stops its workers itself
    (and they die with it: runfolder.lease's PDEATHSIG). A batch in flight when the run stops leaves
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


def check_out_folder(out):
    """--out must be a folder, or not exist yet, and lie in no run folder: a run inside another
    run's folder would be taken for that run's files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise run_record.RunFolderError(f"--out {out}: not a folder; expected the folder that holds run folders")
    for folder in (out.absolute(), *out.absolute().parents):
        # config.json beside the lock file of main_cityscapes.py: some other tool's config.json is no run
        if (folder / run_record.CONFIG).is_file() and (folder / LOCK).exists():
            raise run_record.RunFolderError(f"--out {out}: inside the run folder {folder} (it holds "
                                            f"{run_record.CONFIG}); give a folder outside every run folder")


def keep_data_files(run_dir, root, tasks, resumed):
    """A new run records the size and mtime of every data file its tasks read (DATA_FILES); a
    resumed one refuses data changed since (a run older than the record: nothing to compare)."""
    folders = (IMAGE_DIR, *dict.fromkeys(folder for task in tasks for folder in task.folders()))
    current = file_stats(root, folders)
    path = Path(run_dir) / DATA_FILES
    if not resumed:
        with run_record.atomic_file(path) as f:
            json.dump(current, f, separators=(",", ":"))
        return
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise run_record.RunFolderError(f"--resume {run_dir}: cannot read {path} ({e}); it records the data files "
                                        "the run started on") from None
    changes = describe_changes(root, recorded, current)
    if changes:
        raise run_record.RunFolderError(
            f"--resume {run_dir}: the data changed under the run: {changes}; {DATA_FILES} records each data file's "
            "size and modification time at the run's start; refusing to continue on other data (start a new run)")


def new_run_dir(run_dir):
    """Create <out>/<name> and own it in one step (runfolder.lease), then refuse it, still owned,
    if it holds a run already. (run_dir, ownership)."""
    check_out_folder(run_dir.parent)
    try:
        ownership = lease.acquire(run_dir, create=True)
    except OSError as e:
        raise atomic.WriteError(f"cannot create the run folder {run_dir}: {e.strerror or e}") from None
    try:
        run_record.check_new_run_dir(run_dir, lease.run_files(run_dir))
    except BaseException:
        ownership.release()
        raise
    return run_dir, ownership
