"""Validation of a dataset root against the .npy layout (data/layout.py; docs/design.md, "Release layout").

    python3 -m data.check --data-path DIR [--classes 7 19] [--quick]

The default check covers image/, the label sets of --classes and depth/, and instance/ (the
offsets of tasks/instance.py) when the release holds it.

Every problem names the file or folder and what was expected; all problems are collected
and raised together as one DatasetError. Nothing is skipped or replaced by zeros.
`quick_check` (folders, counts, indices, .npy headers and file sizes; no data read) is run
by the dataset at construction; `check_dataset(deep=True)` also loads every array and
checks its values. `load_valid` checks one array's values as it is loaded (the dataset does
this for every sample it reads).

Both checks first refuse a folder that data.prepare_cityscapes started (it holds
prepare.json) but did not finish (no COMPLETE), or whose SHA256SUMS changed after it
finished: a partial build must never pass as a smaller release.
"""
import argparse
import hashlib
import json
import os
import sys
from collections import Counter

import numpy as np
from tqdm import tqdm

from data.datasets import dataset_of
from data.layout import (
    BUILD_CHECKSUMS,
    BUILD_COMPLETE,
    BUILD_SETTINGS,
    CLASS_COUNTS,
    DEPTH_DIR,
    IMAGE_DIR,
    INSTANCE_DIR,
    SPLITS,
    label_dir,
    size_problem,
)

MAX_LISTED = 20
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


class DatasetError(ValueError):
    """A dataset root that does not match the layout; the message lists the problems."""


class _Problems:
    """Collects "<path>: <what is wrong>" lines; raises them together."""

    def __init__(self):
        self.lines = []

    def add(self, path, what):
        self.lines.append(f"{path}: {what}")

    def raise_if_any(self, root):
        if not self.lines:
            return
        n = len(self.lines)
        report = [f"dataset {root} failed its check ({n} problem{'s' if n > 1 else ''}):"]
        report += [f"  {line}" for line in self.lines[:MAX_LISTED]]
        if n > MAX_LISTED:
            report.append(f"  ... and {n - MAX_LISTED} more")
        raise DatasetError("\n".join(report))


def load_npy(path):
    """np.load whose error names the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: cannot load .npy file ({e})") from e


def _channels(subdir):
    """The trailing shape after (H, W) that a subfolder's arrays must have."""
    return {IMAGE_DIR: (3,), DEPTH_DIR: (1,), INSTANCE_DIR: (3,)}.get(subdir, ())


def _expected_shape(subdir):
    return "(H, W" + "".join(f", {c}" for c in _channels(subdir)) + ")"


# --- structure ------------------------------------------------------------------------


def _list_indices(folder, problems):
    """The indices i of the <i>.npy files in `folder`; anything else is reported as stray."""
    indices = set()
    for entry in os.scandir(folder):
        if entry.name.startswith("."):  # .DS_Store and the like
            continue
        stem, ext = os.path.splitext(entry.name)
        if ext == ".npy" and stem.isascii() and stem.isdigit() and str(int(stem)) == stem and entry.is_file():
            indices.add(int(stem))
        else:
            problems.add(entry.path, "stray entry: a data folder holds only files <i>.npy, i = 0..N-1")
    return indices


def _gaps(indices, count):
    """The (first, last) ranges of 0..count-1 missing from the sorted `indices`.

    Walks the indices present only: a stray 10000000.npy costs one range, not a set of ten
    million indices.
    """
    previous = -1
    for i in [*indices, count]:
        if i > previous + 1:
            yield previous + 1, i - 1
        previous = i


def _no_instances(root):
    """Why a release lacks instance/ and how to get one with it."""
    if os.path.isfile(os.path.join(root, BUILD_SETTINGS)):
        origin = ("this build of data.prepare_cityscapes has no instance targets (built by an older version, "
                  "or from a raw tree without gtFine *_instanceIds.png); add them by rerunning the build with the "
                  f"gtFine package's *_instanceIds.png in RAW: {_rerun_command(root)}")
    else:
        origin = dataset_of(root).missing_instances
    return (f"missing: the instance task reads {INSTANCE_DIR}/<i>.npy (offsets to the instance centroids), "
            f"but {origin}")


def _check_split_structure(split_dir, subdirs, problems):
    """Report missing/empty folders, gaps and count mismatches; return the files found.

    Returns (count, {subdir: sorted indices present}) with count = 1 + the largest index.
    """
    if not os.path.isdir(split_dir):
        problems.add(split_dir, f"missing split folder (a data root holds {' and '.join(SPLITS)})")
        return 0, {}
    found = {}
    for sub in subdirs:
        folder = os.path.join(split_dir, sub)
        if not os.path.isdir(folder):
            if sub != INSTANCE_DIR:  # reported once for all splits by check_dataset, with the reason
                problems.add(folder, f"missing folder (a split holds {', '.join(subdirs)})")
            continue
        try:
            found[sub] = _list_indices(folder, problems)
        except OSError as e:
            problems.add(folder, f"cannot list the folder ({e})")
            continue
        if not found[sub]:
            problems.add(folder, "empty folder: expected files 0.npy .. <N-1>.npy")
    count = max((max(ix) + 1 for ix in found.values() if ix), default=0)
    counts = {sub: len(ix) for sub, ix in found.items() if ix}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{sub} {n}" for sub, n in counts.items())
        problems.add(split_dir, f"file counts differ between subfolders ({listing}); they must be equal")
    found = {sub: sorted(ix) for sub, ix in found.items()}
    rule = f"indices must run 0..{count - 1} in every subfolder"
    for sub, indices in found.items():
        if not indices:  # already reported as empty
            continue
        for first, last in _gaps(indices, count):
            if first == last:
                problems.add(os.path.join(split_dir, sub, f"{first}.npy"), f"missing file ({rule})")
            else:
                problems.add(os.path.join(split_dir, sub),
                             f"missing files {first}..{last}.npy ({last - first + 1} files; {rule})")
    return count, found


# --- headers --------------------------------------------------------------------------


def read_npy_header(path):
    """(shape, dtype, data offset) of a .npy file, read from its header without the data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in _HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = _HEADER_READERS[version](f)
        return shape, dtype, f.tell()


def _check_header(path, subdir, problems):
    """Check dtype, shape and file size from the header; return (H, W) or None if unusable."""
    try:
        shape, dtype, offset = read_npy_header(path)
    except (OSError, ValueError, EOFError) as e:
        problems.add(path, f"not a readable .npy file ({e})")
        return None
    if dtype != np.float32:
        problems.add(path, f"dtype {dtype}, expected float32")
        return None
    if len(shape) != 2 + len(_channels(subdir)) or shape[2:] != _channels(subdir):
        problems.add(path, f"shape {shape}, expected {_expected_shape(subdir)}")
        return None
    if 0 in shape:
        problems.add(path, f"empty array of shape {shape}")
        return None
    expected_bytes = offset + int(np.prod(shape)) * dtype.itemsize
    actual_bytes = os.path.getsize(path)
    if actual_bytes != expected_bytes:
        problems.add(path, f"{actual_bytes} bytes, expected {expected_bytes} for shape {shape}: "
                           "truncated or corrupt")
        return None
    return shape[:2]


def _check_sizes(sizes, problems):
    """All files share one (H, W), the most common one, and it divides by 32."""
    if not sizes:
        return None
    (height, width), _ = Counter(sizes.values()).most_common(1)[0]
    for path, size in sizes.items():
        if size != (height, width):
            problems.add(path, f"size {size[0]}x{size[1]}, expected {height}x{width} like the rest of the dataset")
    if size_problem(height, width):
        example = next(p for p, s in sizes.items() if s == (height, width))
        problems.add(example, f"size {height}x{width}: {size_problem(height, width)}")
    return height, width


# --- the builder's completion marker ---------------------------------------------------


def completion_marker(checksums):
    """The content of COMPLETE for SHA256SUMS content `checksums` (bytes): its sha256sum line."""
    return f"{hashlib.sha256(checksums).hexdigest()}  {BUILD_CHECKSUMS}\n".encode()


def _rerun_command(root):
    """The data.prepare_cityscapes command that finishes or repairs the build in root."""
    try:
        with open(os.path.join(root, BUILD_SETTINGS)) as f:
            settings = json.load(f)
        height, width = settings["size"]
        options = f" --size {height}x{width} --splits {' '.join(settings['splits'])}"
    except (OSError, ValueError, KeyError, TypeError):
        options = " with the --size and --splits of the first run"
    return (f"python3 -m data.prepare_cityscapes --raw RAW --out {root}{options} "
            "(RAW: the raw packages it was built from)")


def _check_build_finished(root):
    """Raise DatasetError for a folder the builder started but did not finish, or whose
    SHA256SUMS no longer matches COMPLETE. Folders without prepare.json are not the
    builder's (the MTAN release, SynthCity) and pass."""
    if not os.path.isfile(os.path.join(root, BUILD_SETTINGS)):
        return
    marker, sums = os.path.join(root, BUILD_COMPLETE), os.path.join(root, BUILD_CHECKSUMS)
    if not os.path.isfile(marker):
        raise DatasetError(
            f"{marker} is missing: the build in {root} is unfinished ({BUILD_SETTINGS} is there, so "
            f"data.prepare_cityscapes started it, but it was interrupted or failed before its last step) "
            f"and its data may be partial. Finish it by rerunning the build: {_rerun_command(root)}")
    try:
        with open(marker, "rb") as f:
            marked = f.read()
        with open(sums, "rb") as f:
            matches = completion_marker(f.read()) == marked
    except OSError as e:
        raise DatasetError(f"{e.filename}: cannot read the finished build's {os.path.basename(e.filename)} "
                           f"({e.strerror}); repair it by rerunning the build: {_rerun_command(root)}") from e
    if not matches:
        raise DatasetError(f"{sums} does not match {marker}: the release changed after its build finished; "
                           f"repair it by rerunning the build: {_rerun_command(root)}")


# --- values ---------------------------------------------------------------------------


def _image_problem(image):
    """What is wrong with an image's values, or None. Fast path: min and max (NaN fails it)."""
    low, high = image.min(), image.max()
    if 0 <= low and high <= 1:
        return None
    finite = np.isfinite(image)
    if not finite.all():
        return f"{np.count_nonzero(~finite)} NaN or infinite values; expected RGB in [0, 1]"
    outside = np.count_nonzero((image < 0) | (image > 1))
    return f"{outside} values outside [0, 1] (min {low:g}, max {high:g}); expected RGB in [0, 1]"


def _depth_problem(depth):
    low, high = depth.min(), depth.max()
    if 0 <= low and np.isfinite(high):
        return None
    finite = np.isfinite(depth)
    if not finite.all():
        return f"{np.count_nonzero(~finite)} NaN or infinite values; expected finite depth >= 0"
    return f"{np.count_nonzero(depth < 0)} negative values (min {low:g}); expected depth >= 0 (0 = invalid)"


def _label_problem(label, num_classes):
    bad = (label != np.rint(label)) | (label < -1) | (label > num_classes - 1)  # NaN != NaN: bad too
    if not bad.any():
        return None
    values, counts = np.unique(label[bad], return_counts=True)
    listing = ", ".join(f"{v:g} ({c} pixels)" for v, c in zip(values[:5], counts[:5]))
    more = f" and {len(values) - 5} other values" if len(values) > 5 else ""
    return f"label values {listing}{more}; expected -1 (void) or 0..{num_classes - 1}"


def _instance_problem(target):
    """Offsets (dy, dx) finite, the mask (channel 2) 0 or 1, the offsets 0 off the mask."""
    offsets, mask = target[..., :2], target[..., 2]
    on = mask == 1
    if np.isfinite(offsets).all() and (on | (mask == 0)).all() and not offsets[~on].any():
        return None
    found = []
    finite = np.isfinite(target)
    if not finite.all():
        found.append(f"{np.count_nonzero(~finite)} NaN or infinite values")
    bad_mask = ~on & (mask != 0)
    if bad_mask.any():
        values = np.unique(mask[bad_mask])
        found.append(f"channel 2 (the instance mask) holds {', '.join(f'{v:g}' for v in values[:5])}"
                     f"{' ...' if len(values) > 5 else ''} at {np.count_nonzero(bad_mask)} pixels")
    off = offsets[~on & (mask == 0)]
    if np.count_nonzero(off):
        found.append(f"{np.count_nonzero(np.any(off != 0, axis=-1))} background pixels (channel 2 = 0) "
                     "with non-zero offsets")
    return ("; ".join(found) + "; expected finite offsets (dy, dx) in channels 0-1, channel 2 in {0, 1}, "
            "offsets 0 where channel 2 is 0")


_LABEL_CLASSES = {label_dir(c): c for c in CLASS_COUNTS}


def _value_problem(subdir, array):
    """What is wrong with the values of an array of `subdir` (image, label_<C>, depth, instance), or None."""
    if subdir == IMAGE_DIR:
        return _image_problem(array)
    if subdir == DEPTH_DIR:
        return _depth_problem(array)
    if subdir == INSTANCE_DIR:
        return _instance_problem(array)
    return _label_problem(array, _LABEL_CLASSES[subdir])


def load_valid(path, subdir):
    """load_npy, then the value check of `subdir`: the array, or DatasetError naming the file and its bad values."""
    array = load_npy(path)
    what = _value_problem(subdir, array)
    if what:
        raise DatasetError(f"{path}: {what}")
    return array


# --- the checks -----------------------------------------------------------------------


def check_dataset(root, classes=CLASS_COUNTS, deep=True, progress=False, splits=SPLITS, folders=None):
    """Check a dataset root; raise DatasetError listing every problem, else return a summary.

    classes: the label sets to check (label_7, label_19). folders: the subfolders to check
    instead of the default (a run checks what its tasks read): image, those label sets,
    depth, and instance when any checked split holds instance/ (then every split must).
    deep=False reads only the .npy headers; deep=True also loads every array and checks its
    values. An unfinished or changed build of data.prepare_cityscapes is refused before
    anything else. A missing instance/ asked for in `folders` says why it is missing and how
    to get a release with it.
    Summary: {"root", "splits": {split: count}, "image_size": (H, W), "classes": the label
    sets checked, "folders": the subfolders checked}.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: data folder not found (expected {'/, '.join(SPLITS)}/ inside)")
    _check_build_finished(root)
    problems = _Problems()
    subdirs = tuple(folders or (IMAGE_DIR, *(label_dir(c) for c in classes), DEPTH_DIR))
    if not folders and any(os.path.isdir(os.path.join(root, split, INSTANCE_DIR)) for split in splits):
        subdirs += (INSTANCE_DIR,)
    if INSTANCE_DIR in subdirs:
        lacking = [split for split in splits if os.path.isdir(os.path.join(root, split))
                   and not os.path.isdir(os.path.join(root, split, INSTANCE_DIR))]
        if lacking:
            where = lacking[0] if len(lacking) == 1 else "{" + ",".join(lacking) + "}"
            problems.add(os.path.join(root, where, INSTANCE_DIR), _no_instances(root))
    counts, files = {}, []
    for split in splits:
        split_dir = os.path.join(root, split)
        counts[split], found = _check_split_structure(split_dir, subdirs, problems)
        files += [(os.path.join(split_dir, sub, f"{i}.npy"), sub) for sub, ix in found.items() for i in ix]

    sizes = {}
    for path, sub in tqdm(files, desc="headers", disable=not progress, leave=False):
        size = _check_header(path, sub, problems)
        if size is not None:
            sizes[path] = size
    image_size = _check_sizes(sizes, problems)

    if deep:
        readable = [(path, sub) for path, sub in files if path in sizes]
        for path, sub in tqdm(readable, desc="values", disable=not progress, leave=False):
            try:
                load_valid(path, sub)
            except DatasetError as e:  # its message already names the file
                problems.lines.append(str(e))

    problems.raise_if_any(root)
    checked = tuple(c for c in CLASS_COUNTS if label_dir(c) in subdirs) if folders else tuple(classes)
    return {"root": root, "splits": counts, "image_size": image_size, "classes": checked, "folders": subdirs}


def quick_check(root, folders, splits=SPLITS):
    """The cheap check run before training: structure and every .npy header of `folders`, no data read."""
    return check_dataset(root, deep=False, splits=splits, folders=tuple(folders))


def format_summary(summary, deep=True):
    counts = ", ".join(f"{split} {n}" for split, n in summary["splits"].items())
    height, width = summary["image_size"]
    labels = "+".join([*(label_dir(c) for c in summary["classes"]),
                       *([INSTANCE_DIR] if INSTANCE_DIR in summary.get("folders", ()) else [])])
    return f"{summary['root']}: {counts} samples, {height}x{width}, {labels}, {'deep' if deep else 'quick'} check OK"


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     prog="python3 -m data.check", description=__doc__.split("\n")[0])
    parser.add_argument("--data-path", required=True, help="dataset root holding train/ and val/")
    parser.add_argument("--classes", type=int, nargs="+", choices=CLASS_COUNTS, default=list(CLASS_COUNTS),
                        help="label sets to check (default: both)")
    parser.add_argument("--quick", action="store_true", help="structure and .npy headers only; no data read")
    args = parser.parse_args(argv)
    try:
        summary = check_dataset(args.data_path, classes=tuple(args.classes), deep=not args.quick,
                                progress=sys.stderr.isatty())
    except DatasetError as e:
        print(e, file=sys.stderr)
        return 1
    print(format_summary(summary, deep=not args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
