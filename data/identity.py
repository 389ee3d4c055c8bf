"""Which data a dataset root holds, as a small JSON-serialisable value for config.json.

Two runs trained on equal identities trained on the same data (up to what each kind can
tell), so runs can be grouped by it. It is computed from names, sizes and, for a built
release, SHA256SUMS alone: no data file is read, so it costs milliseconds.
"""
import hashlib
import json
import os
from pathlib import Path

from data import synthcity
from data.layout import BUILD_CHECKSUMS, BUILD_SETTINGS, SPLITS


def _file_list_digest(root):
    """SHA-256 of the sorted (path relative to root, size in bytes) of every file under the splits."""
    entries = []
    for split in SPLITS:
        for folder, _, names in os.walk(root / split):
            relative = Path(folder).relative_to(root).as_posix()
            entries += [(f"{relative}/{name}", os.stat(os.path.join(folder, name)).st_size) for name in names]
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()


def data_identity(root):
    """The identity of the data at `root`, one of

    {"kind": "synthcity", "generator": SynthCity's metadata: version and every generation
        parameter, seed included}: SynthCity output (it is regenerated from these);
    {"kind": "sha256sums", "sha256": SHA-256 of the SHA256SUMS file}: a release built by
        data.prepare_cityscapes (prepare.json beside SHA256SUMS), whose SHA256SUMS covers
        every file's content;
    {"kind": "file-list", "sha256": SHA-256 of the sorted (relative path, size) of every
        file under train/ and val/}: any other release, such as the MTAN .npy files; a
        change that keeps every size is not seen.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    metadata = synthcity.read_metadata(root)
    if metadata is not None:
        return {"kind": "synthcity", "generator": metadata}
    sums = root / BUILD_CHECKSUMS
    if sums.is_file() and (root / BUILD_SETTINGS).is_file():
        return {"kind": "sha256sums", "sha256": hashlib.sha256(sums.read_bytes()).hexdigest()}
    return {"kind": "file-list", "sha256": _file_list_digest(root)}
