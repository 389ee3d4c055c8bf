"""Train and evaluate one multi-task experiment on CityScapes (or SynthCity).

    python3 main_cityscapes.py --method=adam_with_adatask

Flags → one experiment → the train/evaluate loop; results go to stdout, TensorBoard
and the run folder <out>/<name>/ (config.json, metrics.jsonl, summary.json).
"""
import argparse
import os
import platform
import random
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from data import source as data_source, synthcity
from data.augment import DEPTH_RULES
from data.check import DatasetError
from data.cityscapes import CityscapesNpy
from data.layout import CLASS_COUNTS
from evaluation import run_record
from evaluation.delta_m import delta_m, select_baseline
from evaluation.metrics import SplitMeter
from evaluation.visualize import sample_panel
from models import MODELS, TASKS, build_model
from models.losses import LOSSES
from optim import OPTIMIZERS, backward_and_step, build_optimizer

NUM_PANELS = 4  # fixed validation images shown in TensorBoard each epoch
REPORTED = ("miou", "pix_acc", "abs_err", "rel_err")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Multi-task SegNet on CityScapes (segmentation + depth) with AdaTask and friends.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--method", default="adam_with_adatask", choices=list(OPTIMIZERS), help="optimizer")
    p.add_argument("--arch", default="mtan", choices=list(MODELS), help="network")
    p.add_argument("--width-mult", type=float, default=1.0, help="channel multiplier of the network")
    p.add_argument("--dataset", choices=data_source.DATASETS, default=None,
                   help="default: cityscapes if dataset/cityscapes holds the release, else synthcity")
    p.add_argument("--data-path", default=None, help="a dataset root in the release layout (real or SynthCity)")
    p.add_argument("--image-size", default=None, metavar="HxW",
                   help="SynthCity only: the size it generates (default 128x256); multiples of 32")
    p.add_argument("--synthcity-train", type=int, default=synthcity.DEFAULT_N_TRAIN, metavar="N",
                   help="SynthCity only: number of generated training samples")
    p.add_argument("--synthcity-val", type=int, default=synthcity.DEFAULT_N_VAL, metavar="N",
                   help="SynthCity only: number of generated validation samples")
    p.add_argument("--classes", type=int, default=7, choices=CLASS_COUNTS, help="segmentation classes")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-step", type=int, default=100, help="StepLR: epochs between learning-rate decays")
    p.add_argument("--lr-gamma", type=float, default=0.5, help="StepLR: factor applied every --lr-step epochs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random scale-crop and flip of the reference protocol")
    p.add_argument("--depth-rule", default="divide", choices=DEPTH_RULES,
                   help="depth under zoom: divide by the scale (reference code) or multiply (right for inverse depth)")
    p.add_argument("--baseline", default=None, metavar="FILE",
                   help="JSON of single-task miou, pix_acc, abs_err, rel_err for Δm (default: the published "
                        "7-class row, for the real 7-class 128x256 release only)")
    p.add_argument("--out", default="runs", help="parent folder of run folders")
    p.add_argument("--name", default=None, help="run folder name (default <method>-<weighting>-s<seed>-<timestamp>)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--num-workers", type=int, default=min(4, (os.cpu_count() or 2) // 2),
                   help="DataLoader worker processes (0: load in the main process)")
    p.add_argument("--in-memory", action="store_true",
                   help="load the whole training and test sets into RAM once (small machines with fast GPUs)")
    args = p.parse_args(argv)
    for flag in ("epochs", "batch_size", "lr_step", "synthcity_train", "synthcity_val"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.num_workers < 0:
        p.error("--num-workers must be >= 0")
    if not args.lr > 0 or not args.width_mult > 0:
        p.error("--lr and --width-mult must be positive")
    args.weighting = "ew"  # the only multi-task weighting so far: equal weights
    return args


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
    """Everything one run needs, built from the flags."""

    def __init__(self, args):
        self.args = args
        self.device = pick_device(args.device)
        self.source = data_source.resolve(args.dataset, args.data_path, args.image_size, args.classes,
                                          args.synthcity_train, args.synthcity_val)
        ds = dict(root=self.source.root, num_classes=args.classes, seed=args.seed, in_memory=args.in_memory)
        self.train_set = CityscapesNpy(split="train", augment=args.augment, depth_rule=args.depth_rule, **ds)
        self.test_set = CityscapesNpy(split="val", **ds)
        self.image_size = self.train_set.image_size
        self.baseline, self.baseline_name, self.baseline_reason = select_baseline(
            args.classes, self.image_size, self.source.synthetic, args.baseline)
        seed_everything(args.seed)
        self.model = build_model(args.arch, args.classes, args.width_mult, TASKS).to(self.device)
        self.optimizer = build_optimizer(args.method, self.model.shared_parameters(),
                                         self.model.task_specific_parameters(), args.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, args.lr_step, args.lr_gamma)
        name = args.name or f"{args.method}-{args.weighting}-s{args.seed}-{datetime.now():%Y%m%d-%H%M%S-%f}"
        self.run_dir = run_record.create_run_dir(args.out, name)

    def config(self):
        return {
            "settings": vars(self.args),
            "data": {"name": self.source.name, "root": str(self.source.root), "synthetic": self.source.synthetic,
                     "synthcity": self.source.metadata, "image_size": list(self.image_size),
                     "train_samples": len(self.train_set), "val_samples": len(self.test_set)},
            "baseline": {"name": self.baseline_name, "reason": self.baseline_reason, "metrics": self.baseline},
            "tasks": list(TASKS),
            "device": str(self.device),
            "parameters": self.model.parameter_counts(),
            "git_commit": git_commit(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
            "started": datetime.now().isoformat(timespec="seconds"),
        }

    def loader(self, dataset, epoch, shuffle):
        # The shuffle order depends only on (seed, epoch): a rerun or a resumed run repeats it.
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(self.args.seed * 100_003 + epoch)) \
            if shuffle else None
        dataset.set_epoch(epoch)
        return DataLoader(dataset, batch_size=self.args.batch_size, sampler=sampler,
                          num_workers=self.args.num_workers, pin_memory=self.device.type == "cuda")

    def to_device(self, batch):
        image, label, depth = (t.to(self.device, non_blocking=True) for t in batch)
        return image, [label, depth]


def train_epoch(exp, epoch, writer, step):
    exp.model.train()
    meter = SplitMeter(exp.args.classes, TASKS, exp.device)
    bar = tqdm(exp.loader(exp.train_set, epoch, shuffle=True), desc=f"epoch {epoch} train", leave=False,
               dynamic_ncols=True, mininterval=1.0, disable=None)
    for batch in bar:
        image, targets = exp.to_device(batch)
        preds = exp.model(image)
        losses = torch.stack([LOSSES[t](p, y) for t, p, y in zip(TASKS, preds, targets)])
        exp.optimizer.zero_grad(set_to_none=True)
        backward_and_step(exp.optimizer, losses)
        values = losses.detach().cpu().tolist()
        meter.update([p.detach() for p in preds], targets, values)
        for task, value in zip(TASKS, values):
            writer.add_scalar(f"train_step/loss_{task}", value, step)
        bar.set_postfix({t: f"{v:.4f}" for t, v in zip(TASKS, values)})
        step += 1
    return meter.compute(), step


@torch.no_grad()
def evaluate(exp):
    exp.model.eval()
    meter = SplitMeter(exp.args.classes, TASKS, exp.device)
    panels = []
    for batch in tqdm(exp.loader(exp.test_set, 0, shuffle=False), desc="test", leave=False, dynamic_ncols=True, disable=None,
                      mininterval=1.0):
        image, targets = exp.to_device(batch)
        preds = exp.model(image)
        losses = [LOSSES[t](p, y).item() for t, p, y in zip(TASKS, preds, targets)]
        meter.update(preds, targets, losses)
        for i in range(min(NUM_PANELS - len(panels), len(image))):
            panels.append(sample_panel(image[i].cpu().numpy(), preds[0][i].argmax(0).cpu().numpy(),
                                       targets[0][i].cpu().numpy(), preds[1][i, 0].cpu().numpy(),
                                       targets[1][i, 0].cpu().numpy(), exp.args.classes))
    return meter.compute(), panels


def epoch_line(row, total_epochs):
    tr, te = row["train"], row["test"]
    dm = "n/a" if te["delta_m"] is None else f"{te['delta_m']:+.2f}%"
    return (f"epoch {row['epoch'] + 1:>3}/{total_epochs}  lr {row['lr']:.1e}  "
            f"train loss sem {tr['loss_semantic']:.4f} dep {tr['loss_depth']:.4f} | "
            f"test mIoU {te['miou']:.4f} pixacc {te['pix_acc']:.4f} abs {te['abs_err']:.4f} "
            f"rel {te['rel_err']:.4f} Δm {dm}  ({row['seconds']:.1f} s)")


def final_table(summary, baseline, baseline_name, reason):
    lines = [f"{'metric':<10}{'final':>12}{'last-10 mean':>15}{'baseline':>12}"]
    for key in REPORTED:
        base = f"{baseline[key]:.4f}" if baseline else "-"
        lines.append(f"{key:<10}{summary['final'][key]:>12.4f}{summary['last10'][key]:>15.4f}{base:>12}")
    dm = summary["delta_m"]
    if dm["baseline"] is None:
        lines.append(f"{'delta_m':<10}{'n/a':>12}{'n/a':>15}   ({reason})")
    else:
        lines.append(f"{'delta_m':<10}{dm['final']:>+11.2f}%{dm['last10']:>+14.2f}%   (vs {baseline_name}; lower is better)")
    return "\n".join(lines)


def run(exp):
    args = exp.args
    run_record.write_json(exp.run_dir / run_record.CONFIG, exp.config())
    print(f"run folder {exp.run_dir}  |  {exp.source.name} ({exp.source.root}), {len(exp.train_set)} train / "
          f"{len(exp.test_set)} val, {exp.image_size[0]}x{exp.image_size[1]}, {args.classes} classes  |  "
          f"{args.arch} x{args.width_mult}, {exp.model.parameter_counts()['total']:,} parameters  |  "
          f"{args.method}, {exp.device}", flush=True)
    if exp.baseline is None:
        print(f"Δm: n/a ({exp.baseline_reason})", flush=True)
    writer = SummaryWriter(log_dir=str(exp.run_dir))
    rows, step = [], 0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        lr = exp.optimizer.param_groups[0]["lr"]
        train_metrics, step = train_epoch(exp, epoch, writer, step)
        test_metrics, panels = evaluate(exp)
        exp.scheduler.step()
        test_metrics["delta_m"] = delta_m(test_metrics, exp.baseline) if exp.baseline else None
        row = {"epoch": epoch, "lr": lr, "seconds": time.perf_counter() - start,
               "train": train_metrics, "test": test_metrics}
        run_record.append_metrics(exp.run_dir, row)
        rows.append(row)
        log_epoch(writer, row, panels)
        tqdm.write(epoch_line(row, args.epochs))
    summary = run_record.summarize(rows, exp.baseline, exp.baseline_name)
    run_record.write_json(exp.run_dir / run_record.SUMMARY, summary)
    writer.close()
    print(final_table(summary, exp.baseline, exp.baseline_name, exp.baseline_reason))
    print(f"results in {exp.run_dir} (tensorboard --logdir {args.out})")
    return exp.run_dir


def log_epoch(writer, row, panels):
    epoch = row["epoch"]
    writer.add_scalar("lr", row["lr"], epoch)
    for split in ("train", "test"):
        for key, value in row[split].items():
            if value is not None:
                writer.add_scalar(f"{split}/{key}", value, epoch)
    for i, panel in enumerate(panels):
        writer.add_image(f"val/{i}: image | pred seg | true seg | pred depth | true depth", panel, epoch,
                         dataformats="HWC")
    writer.flush()


def main(argv=None):
    args = parse_args(argv)
    try:  # bad input fails here, before any training, with a message instead of a traceback
        exp = Experiment(args)
    except (DatasetError, run_record.RunFolderError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run(exp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
