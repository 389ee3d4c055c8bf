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
finished: a partial build must never pass as a smaller release. Both keep a release's files
inside its root (the root itself may be a symlink; a symlink in it may not lead out of it) and
its splits apart (no split is, or holds a file of, another). The deep check also verifies
SHA256SUMS when the release has one, as `sha256sum -c` would.
"""
import argparse
import hashlib
import itertools
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

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


def _inside(real, real_root):
    return real == real_root or real.startswith(real_root + os.sep)


def _check_inside(path, real_root, problems):
    """The real path of `path`, a folder or a file of the release; a problem if it is a symlink
    leading outside the root (what lies in such a folder is not reported again)."""
    real = os.path.realpath(path)
    if not _inside(real, real_root) and os.path.islink(path):
        problems.add(path, f"resolves to {real}, outside the data root {real_root}; a release's folders and "
                           "files must lie inside its root (a symlink may not lead out of it)")
    return real


def _list_indices(folder, real_root, problems):
    """{i: real path} of the <i>.npy files in `folder`; anything else is reported as stray.

    Only a symlink costs a realpath: the other files lie in the folder's own real path."""
    real_folder = _check_inside(folder, real_root, problems)
    files = {}
    for entry in os.scandir(folder):
        if entry.name.startswith("."):  # .DS_Store and the like
            continue
        stem, ext = os.path.splitext(entry.name)
        if ext == ".npy" and stem.isascii() and stem.isdigit() and str(int(stem)) == stem and entry.is_file():
            files[int(stem)] = (_check_inside(entry.path, real_root, problems) if entry.is_symlink()
                                else os.path.join(real_folder, entry.name))
        else:
            problems.add(entry.path, "stray entry: a data folder holds only files <i>.npy, i = 0..N-1")
    return files


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


def _check_split_structure(split_dir, subdirs, real_root, problems):
    """Report missing/empty folders, gaps, count mismatches and paths leading out of the root;
    return the files found.

    Returns (count, {subdir: sorted indices present}, {real path: path of each file found})
    with count = 1 + the largest index.
    """
    if not os.path.isdir(split_dir):
        problems.add(split_dir, f"missing split folder (a data root holds {' and '.join(SPLITS)})")
        return 0, {}, {}
    _check_inside(split_dir, real_root, problems)
    found, resolved = {}, {}
    for sub in subdirs:
        folder = os.path.join(split_dir, sub)
        if not os.path.isdir(folder):
            if sub != INSTANCE_DIR:  # reported once for all splits by check_dataset, with the reason
                problems.add(folder, f"missing folder (a split holds {', '.join(subdirs)})")
            continue
        try:
            real_files = _list_indices(folder, real_root, problems)
        except OSError as e:
            problems.add(folder, f"cannot list the folder ({e})")
            continue
        found[sub] = set(real_files)
        resolved.update((real, os.path.join(folder, f"{i}.npy")) for i, real in real_files.items())
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
    return count, found, resolved


def _check_splits_apart(root, resolved, problems):
    """No split is another split's folder, and no file of a split resolves to a file of another
    (a symlinked val/ would make the test set the training set). resolved: {split: {real path: path}}."""
    for first, second in itertools.combinations(resolved, 2):
        first_dir, second_dir = os.path.join(root, first), os.path.join(root, second)
        if os.path.realpath(first_dir) == os.path.realpath(second_dir):
            problems.add(second_dir, f"resolves to the same folder as {first_dir} ({os.path.realpath(first_dir)}); "
                                     "the splits must be distinct folders")
            continue
        for real in sorted(resolved[first].keys() & resolved[second].keys()):
            problems.add(resolved[second][real], f"resolves to {real}, the same file as {resolved[first][real]} of "
                                                 f"the {first} split; a sample belongs to one split only")


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


# --- checksums -------------------------------------------------------------------------

# A line of `sha256sum` output: the digest, two spaces (or " *", binary mode), the path.
_SUMS_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def _read_checksums(root, problems):
    """{relative path: sha256} of the release's SHA256SUMS, None without one. A line not in
    sha256sum's format, or a path leading out of the root, is a problem."""
    path = os.path.join(root, BUILD_CHECKSUMS)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        problems.add(path, f"cannot read it ({e})")
        return None
    listed = {}
    for number, line in enumerate(lines, 1):
        match = _SUMS_LINE.fullmatch(line)
        rel = match and os.path.normpath(match[2])
        if not match:
            problems.add(f"{path} line {number}", f"{line[:80]!r}: expected '<sha256>  <path>' as sha256sum writes")
        elif os.path.isabs(rel) or rel.split(os.sep)[0] == os.pardir:
            problems.add(f"{path} line {number}", f"{match[2]!r}: expected a path inside the data root")
        else:
            listed[rel] = match[1].lower()
    return listed


def _file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_checksums(root, listed, files, splits, subdirs, problems, progress):
    """Every data file checked is listed in SHA256SUMS with its content's digest, and every file
    it lists is there with that digest (as `sha256sum -c`), except those of splits and
    subfolders this check leaves out. files: [(path, subdir)] of the data files found."""
    sums = os.path.join(root, BUILD_CHECKSUMS)
    data_files = {os.path.relpath(path, root) for path, _ in files}
    for rel in sorted(data_files - listed.keys()):
        problems.add(os.path.join(root, rel), f"not listed in {sums}, which must list every data file: "
                                              "added or renamed after the checksums were made")
    checked = [rel for rel in sorted(listed) if rel in data_files or not _left_out(rel, splits, subdirs)]
    for rel in tqdm(checked, desc="checksums", disable=not progress, leave=False):
        path = os.path.join(root, rel)
        try:
            digest = _file_sha256(path)
        except OSError as e:
            problems.add(path, f"listed in {sums} but cannot be read ({e.strerror or e})")
            continue
        if digest != listed[rel]:
            problems.add(path, f"sha256 {digest}, but {sums} lists {listed[rel]}: the file changed after the "
                               "checksums were made")


def _left_out(rel, splits, subdirs):
    """Whether a listed path lies in a split or subfolder of the layout that this check does not cover."""
    parts = rel.split(os.sep)
    return parts[0] in SPLITS and (parts[0] not in splits or len(parts) < 3 or parts[1] not in subdirs)


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
    values, and verifies SHA256SUMS when the release has one. Symlinks leading out of the root
    and splits sharing a folder or a file are refused by both. An unfinished or changed build of data.prepare_cityscapes is refused before
    anything else. A missing instance/ asked for in `folders` says why it is missing and how
    to get a release with it.
    Summary: {"root", "splits": {split: count}, "image_size": (H, W), "classes": the label
    sets checked, "folders": the subfolders checked}.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: data folder not found (expected {'/, '.join(SPLITS)}/ inside)")
    _check_build_finished(root)
    real_root = os.path.realpath(root)
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
    counts, files, resolved = {}, [], {}
    for split in splits:
        split_dir = os.path.join(root, split)
        counts[split], found, resolved[split] = _check_split_structure(split_dir, subdirs, real_root, problems)
        files += [(os.path.join(split_dir, sub, f"{i}.npy"), sub) for sub, ix in found.items() for i in ix]
    _check_splits_apart(root, resolved, problems)

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
        listed = _read_checksums(root, problems)
        if listed is not None:
            _check_checksums(root, listed, files, splits, subdirs, problems, progress)
        if not problems.lines:  # the record of a whole data set: meaningful only on complete files
            problems.lines += dataset_of(root).content_problems(Path(root))

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
