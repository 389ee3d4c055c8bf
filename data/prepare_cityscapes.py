"""Build the .npy CityScapes release (METHODS §1, data/layout.py) from the official raw packages.

    python3 -m data.prepare_cityscapes --raw RAW --out OUT [--size 128x256] [--splits train val]
                                       [--workers N] [--verify]

RAW holds the unpacked official packages leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip
and disparity_trainvaltest.zip:
    RAW/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    RAW/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    RAW/disparity/<split>/<city>/<city>_<seq>_<frame>_disparity.png      (16-bit)

OUT receives <split>/{image,label_7,label_19,depth}/<i>.npy, numbered in sorted (city, file
name) order, and
    index.csv     split,index,city,image,label,disparity (raw paths relative to RAW)
    prepare.json  size, splits, sample counts, format version, OpenCV and NumPy versions
    SHA256SUMS    every .npy plus index.csv and prepare.json: `cd OUT && sha256sum -c SHA256SUMS`
Images are resized with cv2.INTER_AREA, labels and disparity with cv2.INTER_NEAREST.

Rerunning over an existing OUT:
- OUT must hold the same build: the same raw file list (index.csv), --size and --splits
  (prepare.json). Otherwise the run stops before writing anything, so two builds never mix.
- Default: complete and repair. A sample whose four files exist, have the expected shape and
  match the hashes SHA256SUMS holds for them (when it lists them) is kept without reading
  the raw data. Any other sample is converted again and only its files whose bytes differ
  from the conversion are written. index.csv, prepare.json and SHA256SUMS are rewritten only
  when their content changes, so a rerun over a complete OUT touches nothing.
- --verify: convert every sample again and compare with OUT byte for byte (index.csv,
  prepare.json and SHA256SUMS too); writes nothing and fails listing every difference.
  `sha256sum -c` checks the files against SHA256SUMS only; --verify also checks them
  against the raw data and this code.
Each file is written to a hidden temporary neighbour and renamed into place (os.replace), so
an interrupted run leaves only whole files; rerun to finish it. One run per OUT at a time.
"""
import argparse
import csv
import hashlib
import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from data.labels import label_id_tables
from data.layout import DEPTH_DIR, IMAGE_DIR, SPLITS, SUBDIRS, label_dir

FORMAT_VERSION = 1
DEFAULT_SIZE = (128, 256)
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
IMAGE_SUFFIX = "_leftImg8bit.png"
# Sample field -> (raw package folder, file name suffix that replaces IMAGE_SUFFIX).
PACKAGES = {
    "image": ("leftImg8bit", IMAGE_SUFFIX),
    "label": ("gtFine", "_gtFine_labelIds.png"),
    "disparity": ("disparity", "_disparity.png"),
}
SUMS_NAME, INDEX_NAME, SETTINGS_NAME = "SHA256SUMS", "index.csv", "prepare.json"


class PrepareError(Exception):
    """A bad raw tree or output folder; the CLI prints it without a traceback."""


class SampleError(ValueError):
    """convert_sample rejects one of its inputs; `role` is image, label or disparity."""

    def __init__(self, role, message):
        super().__init__(message)
        self.role = role


class Sample(NamedTuple):
    """One raw sample; paths are relative to RAW, with forward slashes."""
    city: str
    image: str
    label: str
    disparity: str


def _label_luts():
    """float32 lookup tables uint8 label id -> (category 0..6, train id 0..18), void -1, NaN = no such id."""
    to_category, to_train = label_id_tables()
    luts = np.full((2, 256), np.nan, np.float32)
    for label_id in to_category:
        if label_id >= 0:  # id -1 (license plate) cannot occur in a uint8 *_labelIds.png
            luts[:, label_id] = to_category[label_id], to_train[label_id]
    return luts


LUT_7, LUT_19 = _label_luts()
KNOWN_IDS = ~np.isnan(LUT_7)


def check_size(size):
    """Raise ValueError unless size = (H, W) with both positive multiples of 32 (SegNet pools 5 times)."""
    h, w = size
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"--size {h}x{w}: H and W must be positive multiples of 32 (e.g. 128x256, 256x512)")


def parse_size(text):
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be HxW such as 128x256 or 256x512, got {text!r}") from None
    check_size((h, w))
    return h, w


def list_samples(raw, split):
    """The samples of one split, sorted by city then file name; PrepareError if the raw tree is incomplete."""
    raw = Path(raw)
    if not raw.is_dir():
        raise PrepareError(f"--raw {raw} is not a folder")
    for package, _ in PACKAGES.values():
        if not (raw / package).is_dir():
            raise PrepareError(f"{raw / package} is missing: unpack the official {package}_trainvaltest.zip into {raw}")
        if not (raw / package / split).is_dir():
            raise PrepareError(f"{raw / package / split} is missing: the {package} package lacks the {split} split")
    image_root = raw / "leftImg8bit" / split
    samples, missing = [], []
    for city in sorted(d.name for d in image_root.iterdir() if d.is_dir()):
        for name in sorted(f.name for f in (image_root / city).glob("*" + IMAGE_SUFFIX)):
            stem = name[: -len(IMAGE_SUFFIX)]
            paths = {field: f"{package}/{split}/{city}/{stem}{suffix}" for field, (package, suffix) in PACKAGES.items()}
            missing += [str(raw / p) for p in paths.values() if not (raw / p).is_file()]
            samples.append(Sample(city, **paths))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PrepareError(f"{len(missing)} raw file(s) missing: {', '.join(missing[:5])}{more}")
    if not samples:
        raise PrepareError(f"{image_root} holds no <city>/*{IMAGE_SUFFIX} images")
    return samples


def _describe(array):
    return f"{array.dtype} array of shape {array.shape}"


def convert_sample(image_bgr, label_ids, disparity, size):
    """One raw sample -> {subdir: float32 array} in the release layout.

    image_bgr: uint8 (h, w, 3) as cv2 reads it; label_ids: uint8 (h, w) official label ids;
    disparity: uint16 (h, w) disparity PNG values, 0 = invalid; size: output (H, W).
    Returns image (H, W, 3) RGB in [0, 1], label_7 and label_19 (H, W) with void -1, and
    depth (H, W, 1) = disparity / 65535.
    """
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise SampleError("image", f"expected an 8-bit 3-channel image, got {_describe(image_bgr)}")
    h, w = image_bgr.shape[:2]
    if label_ids.dtype != np.uint8 or label_ids.shape != (h, w):
        raise SampleError("label", f"expected uint8 label ids of shape {(h, w)} like the image, got {_describe(label_ids)}")
    if disparity.dtype != np.uint16 or disparity.shape != (h, w):
        raise SampleError("disparity", f"expected a 16-bit map of shape {(h, w)} like the image, got {_describe(disparity)}")
    # Checked at full resolution: a wrong file must not pass because resizing skipped its pixels.
    unknown = np.flatnonzero((np.bincount(label_ids.ravel(), minlength=256) > 0) & ~KNOWN_IDS)
    if unknown.size:
        raise SampleError("label", f"label ids {unknown.tolist()} are not in the official Cityscapes table")

    dsize = (size[1], size[0])  # cv2 wants (width, height)
    # Resizing uint8 keeps the image in [0, 255], so it lands exactly in [0, 1].
    image = cv2.cvtColor(cv2.resize(image_bgr, dsize, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    labels = cv2.resize(label_ids, dsize, interpolation=cv2.INTER_NEAREST)
    disparity = cv2.resize(disparity, dsize, interpolation=cv2.INTER_NEAREST)
    return {
        IMAGE_DIR: image.astype(np.float32) / np.float32(255),
        label_dir(7): LUT_7[labels],
        label_dir(19): LUT_19[labels],
        DEPTH_DIR: (disparity.astype(np.float32) / np.float32(65535))[..., None],
    }


def read_png(path):
    """The PNG as stored (8-bit colour, 8-bit or 16-bit grey); PrepareError naming it if unreadable."""
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise PrepareError(f"cannot read {path}: not a readable PNG")
    return array


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_atomic(path, data):
    """Write via a hidden temporary neighbour and os.replace: `path` is always absent or whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_if_changed(path, data):
    if not path.is_file() or path.read_bytes() != data:
        write_atomic(path, data)


def read_sums(path):
    """SHA256SUMS -> {relative path: hex digest}; empty if there is none."""
    if not path.is_file():
        return {}
    entries = (line.partition("  ") for line in path.read_text().splitlines())
    return {rel: digest for digest, _, rel in entries}


def index_csv_bytes(samples):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("split", "index", "city", "image", "label", "disparity"))
    for split, split_samples in samples.items():
        writer.writerows((split, i, *sample) for i, sample in enumerate(split_samples))
    return buffer.getvalue().encode()


def settings_bytes(size, samples):
    settings = {
        "tool": "data.prepare_cityscapes",
        "format_version": FORMAT_VERSION,
        "size": list(size),
        "splits": list(samples),
        "counts": {split: len(split_samples) for split, split_samples in samples.items()},
        "resize": {"image": "cv2.INTER_AREA", "labels": "cv2.INTER_NEAREST", "disparity": "cv2.INTER_NEAREST"},
        "depth": "disparity PNG value / 65535, 0 = invalid",
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    return (json.dumps(settings, indent=2) + "\n").encode()


def npy_templates(size):
    """Per subdir, (header, length) of a correct .npy: a cheap test that a file has the right shape and is whole."""
    h, w = size
    shapes = {IMAGE_DIR: (h, w, 3), label_dir(7): (h, w), label_dir(19): (h, w), DEPTH_DIR: (h, w, 1)}
    templates = {}
    for kind, shape in shapes.items():
        blank = npy_bytes(np.zeros(shape, np.float32))
        templates[kind] = (blank[: len(blank) - 4 * int(np.prod(shape))], len(blank))
    return templates


def _first_difference(old, new):
    old_lines, new_lines = old.decode(errors="replace").splitlines(), new.decode().splitlines()
    for number, (a, b) in enumerate(zip(old_lines, new_lines), 1):
        if a != b:
            return f"line {number}: {a!r} there, {b!r} from --raw"
    number = min(len(old_lines), len(new_lines)) + 1
    return f"line {number}: {len(old_lines)} lines there, {len(new_lines)} from --raw"


def check_existing(out, size, splits, index_csv):
    """Refuse an OUT that holds another build (other raw files, size or splits), so builds never mix."""
    settings_path, index_path = out / SETTINGS_NAME, out / INDEX_NAME
    if settings_path.is_file():
        try:
            old = json.loads(settings_path.read_text())
        except ValueError:
            raise PrepareError(f"{settings_path} is not valid JSON; choose a new --out") from None
        if (old.get("size"), old.get("splits")) != (list(size), list(splits)):
            old_size = "x".join(map(str, old.get("size") or ["?"]))
            raise PrepareError(
                f"{out} was built with --size {old_size} --splits {' '.join(old.get('splits') or [])}; "
                "rerun with those or choose a new --out")
    if index_path.is_file():
        old_index = index_path.read_bytes()
        if old_index != index_csv:
            raise PrepareError(
                f"{index_path} does not match the raw files under --raw ({_first_difference(old_index, index_csv)}); "
                "refusing to mix two builds: choose a new --out")
    elif settings_path.is_file() or any((out / name).exists() for name in (*SPLITS, SUMS_NAME)):
        raise PrepareError(f"{out} holds data but no {INDEX_NAME}: not made by this tool; choose a new --out")


def process_sample(raw, out, split, i, sample, size, templates, old_sums, verify):
    """Make OUT/split/*/i.npy the conversion of `sample` (or only compare when verifying).

    Returns ({relative path: sha256 of the correct content}, [(relative path, "missing" | "differs")]).
    """
    rels = {kind: f"{split}/{kind}/{i}.npy" for kind in SUBDIRS}
    current = {kind: (out / rel).read_bytes() if (out / rel).is_file() else None for kind, rel in rels.items()}
    digests = {rels[kind]: sha256(data) for kind, data in current.items() if data is not None}
    intact = all(
        data is not None
        and len(data) == templates[kind][1] and data.startswith(templates[kind][0])
        and old_sums.get(rels[kind], digests[rels[kind]]) == digests[rels[kind]]
        for kind, data in current.items())
    if intact and not verify:
        return digests, []

    arrays = [read_png(raw / path) for path in (sample.image, sample.label, sample.disparity)]
    try:
        converted = convert_sample(*arrays, size)
    except SampleError as e:
        raise PrepareError(f"{raw / getattr(sample, e.role)}: {e}") from None
    changes = []
    for kind, array in converted.items():
        data = npy_bytes(array)
        digests[rels[kind]] = sha256(data)
        if current[kind] != data:
            changes.append((rels[kind], "missing" if current[kind] is None else "differs"))
            if not verify:
                write_atomic(out / rels[kind], data)
    return digests, changes


def prepare(raw, out, size=DEFAULT_SIZE, splits=SPLITS, verify=False, workers=DEFAULT_WORKERS):
    """Build (or complete, or with verify=True check) the release in `out`; see the module docstring.

    Returns {"samples": {split: count}, "written": [relative paths written]}; raises
    PrepareError on a bad raw tree or output folder, and when verify finds a difference.
    """
    raw, out = Path(raw), Path(out)
    check_size(size)
    splits = [split for split in SPLITS if split in splits]  # canonical order, no repeats
    samples = {split: list_samples(raw, split) for split in splits}
    index_csv, settings = index_csv_bytes(samples), settings_bytes(size, samples)
    if verify and not (out / SETTINGS_NAME).is_file():
        raise PrepareError(f"{out / SETTINGS_NAME} is missing: nothing to verify")
    check_existing(out, size, splits, index_csv)
    if not verify:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.rglob(".*.tmp"):  # left by an interrupted run
            stale.unlink()
        # index.csv first: from here on a rerun from another raw tree is refused.
        write_if_changed(out / INDEX_NAME, index_csv)
        write_if_changed(out / SETTINGS_NAME, settings)
        for split in splits:
            for kind in SUBDIRS:
                (out / split / kind).mkdir(parents=True, exist_ok=True)

    old_sums, templates = read_sums(out / SUMS_NAME), npy_templates(size)
    digests = {INDEX_NAME: sha256(index_csv), SETTINGS_NAME: sha256(settings)}
    changes = []
    for split in splits:
        with ThreadPoolExecutor(workers) as pool:  # cv2 decoding and resizing release the GIL
            futures = [pool.submit(process_sample, raw, out, split, i, sample, size, templates, old_sums, verify)
                       for i, sample in enumerate(samples[split])]
            try:
                for future in tqdm(futures, desc=f"{'verify' if verify else 'prepare'} {split}", unit="sample"):
                    sample_digests, sample_changes = future.result()
                    digests.update(sample_digests)
                    changes += sample_changes
            except BaseException:
                pool.shutdown(cancel_futures=True)  # fail fast instead of converting the rest first
                raise
    sums = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(digests.items())).encode()

    if verify:
        for name, data in ((SETTINGS_NAME, settings), (SUMS_NAME, sums)):
            path = out / name
            if not path.is_file() or path.read_bytes() != data:
                changes.append((name, "missing" if not path.is_file() else "differs"))
        if changes:
            listed = ", ".join(f"{rel} ({why})" for rel, why in changes[:10])
            more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
            raise PrepareError(f"{out} differs from a fresh build in {len(changes)} file(s): {listed}{more}")
        return {"samples": {split: len(s) for split, s in samples.items()}, "written": []}
    write_if_changed(out / SUMS_NAME, sums)
    return {"samples": {split: len(s) for split, s in samples.items()}, "written": [rel for rel, _ in changes]}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m data.prepare_cityscapes",
        description="Build the .npy CityScapes release (image, label_7, label_19, depth) from the raw "
                    "leftImg8bit, gtFine and disparity packages. A rerun completes or repairs OUT.")
    parser.add_argument("--raw", required=True, type=Path,
                        help="folder holding leftImg8bit/, gtFine/ and disparity/ of the official packages")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; a rerun completes it)")
    parser.add_argument("--size", default="128x256",
                        help="output HxW, both multiples of 32 (default 128x256, the release size; also 256x512)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to build")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"threads converting samples (default {DEFAULT_WORKERS})")
    parser.add_argument("--verify", action="store_true",
                        help="convert everything again and compare with OUT byte for byte; write nothing")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as e:
        parser.error(str(e))
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    try:
        report = prepare(args.raw, args.out, size, args.splits, args.verify, args.workers)
    except (PrepareError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{n} {split}" for split, n in report["samples"].items())
    if args.verify:
        print(f"{args.out}: {counts} samples match a fresh build")
    else:
        written, total = len(report["written"]), len(SUBDIRS) * sum(report["samples"].values())
        print(f"{args.out}: {counts} samples; {written} .npy file(s) written, {total - written} kept; "
              f"checksums in {args.out / SUMS_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
