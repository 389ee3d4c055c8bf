"""The CityScapes release (docs/design.md, "Release layout"): the MTAN authors' 128x256 .npy
files, or a release built from the raw data by data.prepare_cityscapes. The user gets it;
nothing marks it, so a root without another dataset's marker is taken for it."""
import hashlib
import json
import os
from pathlib import Path

from data.layout import BUILD_CHECKSUMS, BUILD_SETTINGS, SPLITS

from .base import DATASET_DIR, Dataset


def file_list_digest(root):
    """SHA-256 of the sorted (path relative to root, size in bytes) of every file under the splits."""
    entries = []
    for split in SPLITS:
        for folder, _, names in os.walk(root / split):
            relative = Path(folder).relative_to(root).as_posix()
            entries += [(f"{relative}/{name}", os.stat(os.path.join(folder, name)).st_size) for name in names]
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()


class CityscapesRelease(Dataset):
    name = "cityscapes"
    title = "CityScapes"
    default_root = DATASET_DIR / "cityscapes"
    how_to_get = 'see docs/data.md, "Getting the data" (or dataset/cityscapes/README.md)'
    missing_instances = ("the MTAN .npy release has no instance labels; CityScapes-3 (--tasks semantic instance "
                         "depth) needs a release built from raw CityScapes with python3 -m data.prepare_cityscapes "
                         "(it reads gtFine *_instanceIds.png), or SynthCity (--dataset synthcity)")

    def identity(self, root):
        """{"kind": "sha256sums", "sha256": SHA-256 of the SHA256SUMS file} for a release built by
        data.prepare_cityscapes (prepare.json beside SHA256SUMS), whose SHA256SUMS covers every
        file's content; else {"kind": "file-list", "sha256": file_list_digest}, as for the MTAN
        .npy files: a change that keeps every size is not seen."""
        sums = root / BUILD_CHECKSUMS
        if sums.is_file() and (root / BUILD_SETTINGS).is_file():
            return {"kind": "sha256sums", "sha256": hashlib.sha256(sums.read_bytes()).hexdigest()}
        return {"kind": "file-list", "sha256": file_list_digest(root)}
