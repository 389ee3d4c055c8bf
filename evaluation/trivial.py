"""Trivial predictors: the floor a trained model has to beat.

Every task of the registry (tasks/) whose folders the data holds is scored: semantic
predicts the most frequent train class (over non-void pixels) at every val pixel, depth the
mean train depth (over valid pixels), instance zero offsets (every pixel its own centroid:
InstErr is the mean |offset| over instance pixels). Each is scored by its task's meter, as
in training. Batches hold one sample each, so the batch-mean AbsErr/RelErr are means over
val samples (those with a valid pixel); the pixel-weighted values are reported too.

    python3 -m evaluation.trivial --data-path DIR [--classes 7|19] [--tasks T ...] [--json OUT]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from data.check import load_npy
from data.layout import CLASS_COUNTS, IMAGE_DIR
from tasks import TASKS, TaskSettings, build_tasks


class MajorityClass:
    """Semantic: the most frequent train class over non-void pixels, everywhere."""

    fits = True

    def __init__(self, task):
        self.classes = task.settings.classes
        self.counts = np.zeros(self.classes, dtype=np.int64)

    def observe(self, target):
        known = target[(target >= 0) & (target < self.classes)]
        self.counts += np.bincount(known.numpy(), minlength=self.classes)

    def fitted(self, train_dir):
        if self.counts.sum() == 0:
            raise ValueError(f"{train_dir}: no labelled pixel")
        self.majority = int(self.counts.argmax())
        return {"majority_class": self.majority}

    def describe(self):
        return f"class {self.majority} everywhere"

    def predict(self, target):
        return torch.full_like(target, self.majority)


class MeanDepth:
    """Depth: the mean train depth over valid (non-zero) pixels, everywhere."""

    fits = True

    def __init__(self, task):
        self.total, self.count = 0.0, 0

    def observe(self, target):
        valid = target[target != 0]
        self.total += valid.double().sum().item()
        self.count += valid.numel()

    def fitted(self, train_dir):
        if self.count == 0:
            raise ValueError(f"{train_dir}: no valid depth pixel")
        self.mean = self.total / self.count
        return {"mean_depth": self.mean}

    def describe(self):
        return f"depth {self.mean:.6f} everywhere"

    def predict(self, target):
        return torch.full(target.shape, self.mean, dtype=torch.float64)


class ZeroOffsets:
    """Instance: offset (0, 0) at every pixel; nothing to fit."""

    fits = False

    def __init__(self, task):
        pass

    def fitted(self, train_dir):
        return {}

    def describe(self):
        return "zero offsets everywhere"

    def predict(self, target):
        return torch.zeros(target.shape[0], 2, *target.shape[2:], dtype=target.dtype)


# The trivial predictor of each task of the registry.
PREDICTORS = {"semantic": MajorityClass, "depth": MeanDepth, "instance": ZeroOffsets}


def _count(split_dir):
    count = len(list((split_dir / IMAGE_DIR).glob("*.npy")))
    if count == 0:
        raise ValueError(f"{split_dir / IMAGE_DIR}: no .npy samples; expected the layout of data/layout.py")
    return count


def present_tasks(data_path, num_classes=7):
    """The registry's task names whose folders the val split holds, in canonical order."""
    val, settings = Path(data_path) / "val", TaskSettings(classes=num_classes)
    return [name for name, cls in TASKS.items() if all((val / f).is_dir() for f in cls(settings).folders())]


def _targets(split_dir, count, tasks):
    """Yield [target per task], each as its task's meter takes it with a batch of one, for
    every sample of a split."""
    for i in range(count):
        arrays = {f: load_npy(split_dir / f / f"{i}.npy") for task in tasks for f in task.folders()}
        sizes = {f: a.shape[:2] for f, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"{split_dir} sample {i}: the folders' arrays differ in (H, W): {sizes}")
        yield [task.to_tensor(task.target(arrays))[None] for task in tasks]


def trivial_scores(data_path, num_classes=7, tasks=None):
    """(what was fitted, the predictors in words, {task name: its meter's output on val}) of
    the trivial predictors of `tasks` (default: every task whose folders the data holds)."""
    train_dir, val_dir = Path(data_path) / "train", Path(data_path) / "val"
    train_count, val_count = _count(train_dir), _count(val_dir)
    available = present_tasks(data_path, num_classes)
    names = available if tasks is None else list(tasks)
    missing = [name for name in names if name not in available]
    if missing:
        raise ValueError(f"{val_dir}: no folders for task {', '.join(missing)} "
                         f"(present: {', '.join(available) or 'none'})")
    if not names:
        raise ValueError(f"{data_path}: the data holds the folders of no task of {', '.join(TASKS)}")
    task_list = build_tasks(names, TaskSettings(classes=num_classes))
    predictors = [PREDICTORS[task.name](task) for task in task_list]
    for task, predictor in zip(task_list, predictors):
        lacking = [f for f in task.folders() if predictor.fits and not (train_dir / f).is_dir()]
        if lacking:
            raise ValueError(f"{train_dir}: no {', '.join(lacking)}/, which the trivial {task.name} predictor "
                             f"is fitted on")

    fitting = [p for p in predictors if p.fits]
    if fitting:
        for targets in _targets(train_dir, train_count, [t for t, p in zip(task_list, predictors) if p.fits]):
            for predictor, target in zip(fitting, targets):
                predictor.observe(target[0])
    fitted = {}
    for predictor in predictors:
        fitted.update(predictor.fitted(train_dir))

    meters = [task.meter() for task in task_list]
    for targets in _targets(val_dir, val_count, task_list):
        for meter, predictor, target in zip(meters, predictors, targets):
            meter.update(predictor.predict(target), target)
    description = ", ".join(p.describe() for p in predictors)
    return fitted, description, {task.name: meter.compute() for task, meter in zip(task_list, meters)}


def trivial_metrics(data_path, num_classes=7, tasks=None):
    """trivial_scores as one flat dict: every task's metrics (its meter's keys: miou, pix_acc,
    class_iou, abs_err, ..., inst_err), what was fitted (majority_class, mean_depth),
    "tasks" (the names scored) and "description" (the predictors in words)."""
    return _flat(*trivial_scores(data_path, num_classes, tasks))


def _flat(fitted, description, scores):
    result = {"tasks": list(scores)}
    for metrics in scores.values():
        result.update(metrics)
    return {**result, **fitted, "description": description}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", required=True, help="root holding train/ and val/")
    parser.add_argument("--classes", type=int, default=7, choices=CLASS_COUNTS)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), metavar="TASK",
                        help="the tasks to score (default: every task whose folders the data holds)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    try:
        fitted, description, scores = trivial_scores(args.data_path, args.classes, args.tasks)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"trivial predictors on {args.data_path} val ({args.classes} classes): {description}")
    for metrics in scores.values():
        for key, value in metrics.items():
            if isinstance(value, float):  # not the per-class dicts
                print(f"  {key:<11} {value:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(_flat(fitted, description, scores), indent=2) + "\n")


if __name__ == "__main__":
    main()
