"""Loader throughput of CityscapesNpy through a DataLoader, in samples per second.

    python3 -m scripts.bench_loader [--data-path DIR] [--samples N] [--batch-size B] [--torch-threads T]

Without --data-path it writes a temporary dataset of N random valid 128x256 samples.
Each setting reads N samples of the train split in shuffled batches, after one warm-up
pass so the files are in the page cache; the time includes starting the workers, which
the training loop pays every epoch.

Other processes on the machine distort the in-process numbers badly: torch's intra-op
threads in the batch collation wait for descheduled cores. The header prints the load
average found at the start; --torch-threads 1 shows the loader without that effect.
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from data.cityscapes import CityscapesNpy
from data.layout import DEPTH_DIR, IMAGE_DIR, SPLITS, label_dir

SETTINGS = (  # (augment, in_memory, workers)
    (True, False, 0),
    (False, False, 0),
    (True, True, 0),
    (True, False, 2),
    (False, False, 2),
)


def write_random_dataset(root, count, height=128, width=256):
    """`count` train samples and one val sample of random arrays that pass the layout checks."""
    rng = np.random.default_rng(0)
    for split, n in zip(SPLITS, (count, 1)):
        arrays = {
            IMAGE_DIR: lambda: rng.random((height, width, 3), dtype=np.float32),
            label_dir(7): lambda: rng.integers(-1, 7, (height, width)).astype(np.float32),
            label_dir(19): lambda: rng.integers(-1, 19, (height, width)).astype(np.float32),
            DEPTH_DIR: lambda: rng.random((height, width, 1), dtype=np.float32) * 0.5,
        }
        for sub, make in arrays.items():
            os.makedirs(os.path.join(root, split, sub))
            for i in range(n):
                np.save(os.path.join(root, split, sub, f"{i}.npy"), make())


def samples_per_second(dataset, samples, batch_size, workers):
    loader = DataLoader(Subset(dataset, range(min(samples, len(dataset)))), batch_size=batch_size,
                        shuffle=True, num_workers=workers)
    for _ in loader:  # warm-up: page cache, lazy imports
        pass
    dataset.set_epoch(1)
    start = time.perf_counter()
    seen = sum(len(images) for images, _, _ in loader)
    return seen / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("--data-path", help="dataset root (default: a temporary random 128x256 dataset)")
    parser.add_argument("--samples", type=int, default=1024, help="samples read per setting")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_path
        if root is None:
            root = tmp
            write_random_dataset(root, args.samples)
        rows = []
        for augment, in_memory, workers in SETTINGS:
            dataset = CityscapesNpy(root, "train", augment=augment, in_memory=in_memory)
            rate = samples_per_second(dataset, args.samples, args.batch_size, workers)
            rows.append((augment, in_memory, workers, rate))
    height, width = dataset.image_size
    print(f"CityscapesNpy {height}x{width}, {args.samples} samples, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average before {load_before:.1f}")
    print(f"{'augment':>8} {'in_memory':>10} {'workers':>8} {'samples/s':>10} {'ms/sample':>10}")
    for augment, in_memory, workers, rate in rows:
        print(f"{augment!s:>8} {in_memory!s:>10} {workers:>8} {rate:>10.0f} {1000 / rate:>10.3f}")


if __name__ == "__main__":
    main()
