"""Trivial predictors: the floor a trained model has to beat.

From the train split take the most frequent class (over non-void pixels) and the mean depth
(over valid pixels); predict that class and that constant depth at every val pixel, scored
with the same accumulators as training. Batches hold one sample each, so the batch-mean
AbsErr/RelErr are means over val samples (those with a valid pixel); the pixel-weighted
values are reported too.

    python3 -m evaluation.trivial --data-path DIR [--classes 7|19] [--json OUT]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from data.layout import CLASS_COUNTS, DEPTH_DIR, IMAGE_DIR, label_dir
from evaluation.metrics import ConfusionMatrix, DepthErrors


def _samples(root, split, num_classes):
    """Yield (label (H,W) int64, depth (H,W) float32) for every sample of a split."""
    split_dir = Path(root) / split
    count = len(list((split_dir / IMAGE_DIR).glob("*.npy")))
    if count == 0:
        raise ValueError(f"{split_dir / IMAGE_DIR}: no .npy samples; expected the layout of data/layout.py")
    for i in range(count):
        label_file = split_dir / label_dir(num_classes) / f"{i}.npy"
        depth_file = split_dir / DEPTH_DIR / f"{i}.npy"
        label, depth = np.load(label_file), np.load(depth_file)
        if label.ndim != 2 or depth.shape != label.shape + (1,):
            raise ValueError(f"{label_file} {label.shape} / {depth_file} {depth.shape}: "
                             f"expected labels (H, W) and depth (H, W, 1)")
        yield label.astype(np.int64), depth[..., 0]


def trivial_metrics(data_path, num_classes=7):
    class_counts = np.zeros(num_classes, dtype=np.int64)
    depth_sum, depth_count = 0.0, 0
    for label, depth in _samples(data_path, "train", num_classes):
        known = label[(label >= 0) & (label < num_classes)]
        class_counts += np.bincount(known, minlength=num_classes)
        valid = depth[depth != 0]
        depth_sum += valid.sum(dtype=np.float64)
        depth_count += valid.size
    if class_counts.sum() == 0 or depth_count == 0:
        raise ValueError(f"{Path(data_path) / 'train'}: no labelled pixel or no valid depth pixel")
    majority = int(class_counts.argmax())
    mean_depth = depth_sum / depth_count

    confusion, depth_errors = ConfusionMatrix(num_classes), DepthErrors()
    for label, depth in _samples(data_path, "val", num_classes):
        target = torch.from_numpy(label)[None]
        depth_target = torch.from_numpy(depth)[None, None].double()
        confusion.update(torch.full_like(target, majority), target)
        depth_errors.update(torch.full_like(depth_target, mean_depth), depth_target)
    return {
        "miou": confusion.miou(),
        "pix_acc": confusion.pix_acc(),
        "abs_err": depth_errors.abs_err(),
        "rel_err": depth_errors.rel_err(),
        "abs_err_px": depth_errors.abs_err_px(),
        "rel_err_px": depth_errors.rel_err_px(),
        "majority_class": majority,
        "mean_depth": mean_depth,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", required=True, help="root holding train/ and val/")
    parser.add_argument("--classes", type=int, default=7, choices=CLASS_COUNTS)
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    result = trivial_metrics(args.data_path, args.classes)
    print(f"trivial predictors on {args.data_path} val ({args.classes} classes): "
          f"class {result['majority_class']} everywhere, depth {result['mean_depth']:.6f} everywhere")
    for key in ("miou", "pix_acc", "abs_err", "rel_err", "abs_err_px", "rel_err_px"):
        print(f"  {key:<11} {result[key]:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
