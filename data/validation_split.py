"""The validation split (docs/fair_comparisons.md, "The validation split"): a seeded subset of
the release's train/ held out from training, so that model choices never look at the test split
(the release's val/ folder, key "test"). Its metrics key is "val".

The held-out indices depend only on the number of training samples, --val-fraction and
--val-seed: never on the run's seed, its method or its number of processes, so every run of a
comparison holds out the same samples. Their sha256 is recorded as a result setting.
"""
import hashlib

import numpy as np
from torch.utils.data import Dataset

DEFAULT_SEED = 1234  # --val-seed's default: a constant, not the run's --seed, so every run shares one split
HASH_SETTING = "val_split_sha256"  # config.json's derived setting: the held-out indices' hash


def held_out(n_train, fraction, seed):
    """The sorted indices of the round(fraction · n_train) training samples held out for
    validation, drawn by numpy's default_rng(seed); ValueError naming --val-fraction when that
    leaves no validation sample or no training sample."""
    if not 0 < fraction < 1:
        raise ValueError(f"--val-fraction {fraction}: expected a number in (0, 1) to hold out a validation split")
    count = round(fraction * n_train)
    if not 1 <= count <= n_train - 1:
        raise ValueError(f"--val-fraction {fraction}: of the {n_train} training samples it holds out {count}; "
                         f"expected at least 1 held out and at least 1 left to train on")
    chosen = np.random.default_rng(seed).choice(n_train, size=count, replace=False)
    return sorted(int(i) for i in chosen)


def remaining(n_train, held):
    """The training indices not held out, in order."""
    held = set(held)
    return [i for i in range(n_train) if i not in held]


def split_hash(indices):
    """sha256 (hex) of the held-out indices as comma-separated decimals: what config.json records."""
    return hashlib.sha256(",".join(map(str, sorted(indices))).encode()).hexdigest()


class Subset(Dataset):
    """The samples `indices` of a CityscapesNpy, in that order, keeping its epoch and image size:
    item i is the dataset's item indices[i] (and (i, draw) its extra draw), so a sample's
    augmentation is the one it has in the whole split."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    @property
    def image_size(self):
        return self.dataset.image_size

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            return self.dataset[(self.indices[index[0]], index[1])]
        return self.dataset[self.indices[index]]
