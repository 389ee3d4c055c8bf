"""A dataset root in the .npy release layout (docs/design.md, "Data") as a torch Dataset."""
import copy
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from data.augment import check_resampling, draw_crop
from data.check import load_valid, quick_check
from data.layout import IMAGE_DIR, SPLITS


class CityscapesNpy(Dataset):
    """One split of a dataset root in the .npy layout (real release, built release or SynthCity).

    `tasks`: Task objects (tasks/); item i is (image float32 (3, H, W), {task name: target
    tensor}), each target read and augmented by its task. With augment=True the random
    scale-crop-flip of data.augment is drawn from a generator seeded by (seed, epoch, i), so
    a sample does not depend on the number of loader workers or the order of loading, and a
    resumed run repeats it exactly; an item (i, draw) is sample i drawn again as an extra sample,
    its crop seeded by (seed, epoch, i, draw). Call set_epoch(epoch) before each epoch; the epoch lives
    in shared memory, so it also reaches persistent DataLoader workers.

    The constructor runs data.check.quick_check on the split and the folders the tasks read
    (folders, counts, every .npy header, an unfinished build) and raises
    data.check.DatasetError naming what is wrong. Every array's values are checked as it is
    loaded (data.check.load_valid, about 0.1 ms a sample at 128x256): a bad array raises
    DatasetError naming the file and the values, also from a DataLoader worker, instead of
    training on it. in_memory=True loads and checks every sample once into RAM.
    """

    def __init__(self, root, split, tasks, augment=False, seed=0, in_memory=False, resampling="align_corners"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        check_resampling(resampling)
        self.resampling = resampling
        self.tasks = list(tasks)
        self._folders = (IMAGE_DIR, *dict.fromkeys(f for task in self.tasks for f in task.folders()))
        summary = quick_check(root, folders=self._folders, splits=(split,))
        self.root, self.split, self.augment, self.seed = os.fspath(root), split, augment, seed
        self._image_size = summary["image_size"]
        self._length = summary["splits"][split]
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._samples = [self._load(i) for i in range(self._length)] if in_memory else None

    def without_augmentation(self):
        """This split, unaugmented, sharing what this one holds in RAM (in_memory): the
        validation split held out of train/ is not loaded twice."""
        view = copy.copy(self)
        view.augment = False
        return view

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
        return {folder: load_valid(os.path.join(self.root, self.split, folder, f"{index}.npy"), folder)
                for folder in self._folders}

    def __getitem__(self, index):
        # (index, draw), draw ≥ 1: the draw-th extra sample of the epoch (SDMGrad's extra batches),
        # with an augmentation of its own, (seed, epoch, index, draw)
        index, draw = index if isinstance(index, tuple) else (index, None)
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} samples in {self.split}")
        arrays = self._load(index) if self._samples is None else self._samples[index]
        image = arrays[IMAGE_DIR]
        targets = {task.name: task.target(arrays) for task in self.tasks}
        key = [self.seed, self.epoch, index] + ([] if draw is None else [draw])
        crop = draw_crop(np.random.default_rng(key), *self._image_size) if self.augment else None
        if crop is not None:  # every augment returns a new array: the in-memory cache stays as loaded
            image = crop.image(image, self.resampling)
            targets = {task.name: task.augment(targets[task.name], crop) for task in self.tasks}
        elif self._samples is not None:  # the returned tensors must not alias the cache
            targets = {name: target.copy() for name, target in targets.items()}
        return (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                {task.name: task.to_tensor(targets[task.name]) for task in self.tasks})
