"""The CityScapes .npy release (METHODS §1) as a torch Dataset."""
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from data.augment import check_depth_rule, scale_crop_flip
from data.check import load_valid, quick_check
from data.layout import DEPTH_DIR, IMAGE_DIR, SPLITS, label_dir


class CityscapesNpy(Dataset):
    """One split of a dataset root in the .npy layout (real release or SynthCity).

    Item i: (image float32 (3, H, W), label int64 (H, W) with void -1, depth float32
    (1, H, W)). With augment=True the random scale-crop-flip of data.augment is drawn from
    a generator seeded by (seed, epoch, i), so a sample does not depend on the number of
    loader workers or the order of loading, and a resumed run repeats it exactly. Call
    set_epoch(epoch) before each epoch; the epoch lives in shared memory, so it also
    reaches persistent DataLoader workers.

    The constructor runs data.check.quick_check on the split (folders, counts, every .npy
    header, an unfinished build) and raises data.check.DatasetError naming what is wrong.
    Every array's values are checked as it is loaded (data.check.load_valid, about 0.1 ms
    a sample at 128x256): a bad label, image or depth raises DatasetError naming the file
    and the values, also from a DataLoader worker, instead of training on it.
    in_memory=True loads and checks every sample once into RAM.
    """

    def __init__(self, root, split, num_classes=7, augment=False, depth_rule="divide", seed=0, in_memory=False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        check_depth_rule(depth_rule)
        summary = quick_check(root, num_classes, splits=(split,))
        self.root, self.split, self.num_classes = os.fspath(root), split, num_classes
        self.augment, self.depth_rule, self.seed = augment, depth_rule, seed
        self._image_size = summary["image_size"]
        self._length = summary["splits"][split]
        self._subdirs = (IMAGE_DIR, label_dir(num_classes), DEPTH_DIR)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._samples = [self._load(i) for i in range(self._length)] if in_memory else None

    @property
    def image_size(self):
        """(H, W) of every sample."""
        return self._image_size

    @property
    def epoch(self):
        return int(self._epoch)

    def set_epoch(self, epoch):
        self._epoch.fill_(epoch)

    def __len__(self):
        return self._length

    def _load(self, index):
        return tuple(load_valid(os.path.join(self.root, self.split, sub, f"{index}.npy"), sub) for sub in self._subdirs)

    def __getitem__(self, index):
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} samples in {self.split}")
        if self._samples is None:
            image, label, depth = self._load(index)
        else:
            image, label, depth = self._samples[index]
            depth = depth.copy()  # the returned tensors must not alias the cache
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, label, depth = scale_crop_flip(image, label, depth, rng, depth_rule=self.depth_rule)
        height, width = self._image_size
        return (
            torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            torch.from_numpy(label.astype(np.int64)),
            torch.from_numpy(depth.reshape(1, height, width)),
        )
