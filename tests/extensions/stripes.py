"""A toy dataset for tests/test_extension.py: horizontal bands of the 7 categories, generated
on demand in the release layout."""
import json

import numpy as np

from data.layout import DEPTH_DIR, IMAGE_DIR, SPLITS, label_dir

from .base import DATASET_DIR, Dataset


class Stripes(Dataset):
    name = "stripes"
    title = "Stripes"
    synthetic = True
    marker = "stripes.json"
    default_root = DATASET_DIR / "stripes"
    generated = True
    description = "horizontal bands (a test's toy)"
    not_comparable = "Stripes are a toy"
    missing_instances = "Stripes have no instance targets"

    def identity(self, root):
        return {"kind": "stripes", **json.loads((root / self.marker).read_text())}

    def generate(self, image_size, n_train, n_val):
        height, width = image_size
        root = self.default_root / f"{height}x{width}-{n_train}-{n_val}"
        if (root / self.marker).is_file():
            return root
        rows = np.arange(height)[:, None].repeat(width, 1)
        for split, count in zip(SPLITS, (n_train, n_val)):
            for i in range(count):
                labels = ((rows + i) * 7 // height % 7).astype(np.float32)
                arrays = {IMAGE_DIR: np.stack([labels / 6, 1 - labels / 6, np.full_like(labels, 0.5)], -1),
                          label_dir(7): labels, label_dir(19): labels * 2,
                          DEPTH_DIR: (0.05 + labels / 20)[..., None]}
                for folder, array in arrays.items():
                    (root / split / folder).mkdir(parents=True, exist_ok=True)
                    np.save(root / split / folder / f"{i}.npy", array.astype(np.float32))
        (root / self.marker).write_text(json.dumps({"size": [height, width], "train": n_train, "val": n_val}))
        return root
