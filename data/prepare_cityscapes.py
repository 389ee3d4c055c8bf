"""Build the .npy CityScapes release (docs/design.md, "Release layout"; data/layout.py) from the official raw packages.

    python3 -m data.prepare_cityscapes --raw RAW --out OUT [--size 128x256] [--splits train val]
                                       [--workers N] [--verify]

RAW holds the unpacked official packages leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip
and disparity_trainvaltest.zip:
    RAW/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    RAW/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    RAW/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  (optional, 16-bit)
    RAW/disparity/<split>/<city>/<city>_<seq>_<frame>_disparity.png      (16-bit)

Every leftImg8bit image needs its gtFine label and disparity map and vice versa: the three
packages' file lists are cross-checked per split and city, and any mismatch (a missing or
unreadable city folder, a missing file, an orphan label or disparity) stops the run before
it writes anything, listing the mismatches. When gtFine holds *_instanceIds.png files (the
official package does) in any split built, every sample needs one too, and instance/ is
built; without any, the build has no instance/ (the semantic and depth tasks only).

OUT receives <split>/{image,label_7,label_19,depth[,instance]}/<i>.npy, numbered in sorted
(city, file name) order, and
    index.csv     split,index,city,image,label,disparity[,instance] (raw paths relative to RAW)
    prepare.json  size, splits, sample counts, subfolders, format version, OpenCV and NumPy versions
    SHA256SUMS    every .npy plus index.csv and prepare.json: `cd OUT && sha256sum -c SHA256SUMS`
    COMPLETE      written last: the sha256sum line of SHA256SUMS (`sha256sum -c COMPLETE`)
Images are resized with cv2.INTER_AREA, labels, disparity and instance ids with
cv2.INTER_NEAREST. instance/<i>.npy (format version 2) is the offset target of
data/instances.py computed on the resized instance ids: each centroid is that of the
instance's pixels that survive the resize, and an instance the resize drops is absent.

A folder with prepare.json but no COMPLETE is an unfinished build: data.check, and so
training, refuse it. The first write of any run removes COMPLETE, so an interrupted run
(even kill -9) never leaves a folder that passes as finished. Each file is written whole
(runfolder/atomic.py: a hidden temporary neighbour renamed into place), so OUT holds only
whole files. One run per OUT at a time.

Rerunning over an existing OUT (the way to finish an interrupted build):
- OUT must hold the same build: the same raw file list (index.csv), --size and --splits
  (prepare.json). Otherwise the run stops before writing anything, so two builds never mix.
- Upgrade: a build without instance/ (format version 1, or built from a gtFine without
  *_instanceIds.png) rerun from the same raw files plus the instanceIds gains instance/:
  index.csv gains its instance column, prepare.json the new version, SHA256SUMS and COMPLETE
  are remade, and the image, label and depth files, byte-identical, are left untouched. A
  build with instance/ is not rerun from a raw tree without the instanceIds (refused).
- Default: complete and repair. A rerun vouches only for bytes it computed itself from RAW
  in this run: every sample is converted again and each file in OUT is compared with the
  conversion; a file is kept when its bytes are equal and written otherwise. SHA256SUMS is
  made from the fresh conversion, never from the files found in OUT, so a damaged file is
  repaired even when SHA256SUMS is gone. A rerun costs a full conversion but writes only
  what differs: over a complete, intact OUT it touches nothing.
- --verify: convert every sample again and compare with OUT byte for byte (index.csv,
  prepare.json, SHA256SUMS and COMPLETE too); writes nothing and fails listing every
  difference. `sha256sum -c` checks the files against SHA256SUMS only; --verify also checks
  them against the raw data and this code.
"""
import argparse
import csv
import hashlib
import io
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from data.check import completion_marker
from data.instances import instance_target
from data.labels import label_id_tables
from data.layout import (
    BUILD_CHECKSUMS,
    BUILD_COMPLETE,
    BUILD_INDEX,
    BUILD_SETTINGS,
    DEPTH_DIR,
    IMAGE_DIR,
    INSTANCE_DIR,
    SIZE_MULTIPLE,
    SPLITS,
    SUBDIRS,
    label_dir,
    size_problem,
)
from runfolder import atomic

# 1: image, label_7, label_19, depth. 2: instance/ from gtFine *_instanceIds.png (the other
# folders' bytes unchanged).
FORMAT_VERSION = 2
DEFAULT_SIZE = (128, 256)
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
IMAGE_SUFFIX = "_leftImg8bit.png"
# Sample field -> (raw package folder, file name suffix that replaces IMAGE_SUFFIX).
PACKAGES = {
    "image": ("leftImg8bit", IMAGE_SUFFIX),
    "label": ("gtFine", "_gtFine_labelIds.png"),
    "disparity": ("disparity", "_disparity.png"),
}
# The optional fourth file of a sample: built when gtFine holds any.
INSTANCE_PACKAGE = ("gtFine", "_gtFine_instanceIds.png")
MAX_LISTED = 20  # mismatches listed in an error; the rest are counted


class PrepareError(Exception):
    """A bad raw tree or output folder; the CLI prints it without a traceback."""


class SampleError(ValueError):
    """convert_sample rejects one of its inputs; `role` is image, label, disparity or instance."""

    def __init__(self, role, message):
        super().__init__(message)
        self.role = role


class Sample(NamedTuple):
    """One raw sample; paths are relative to RAW, with forward slashes; instance None: no instance ids."""
    city: str
    image: str
    label: str
    disparity: str
    instance: str | None = None


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


RAW_FRAME = (1024, 2048)  # CityScapes' camera frames: a release only ever downsamples them
FLOATS_PER_PIXEL = 3 + 1 + 1 + 1 + 3  # image, label_7, label_19, depth, instance: float32 each


def check_size(size):
    """Raise ValueError unless the network takes images of size = (H, W) (data.layout.size_problem)
    and the size is no larger than the raw frames (else the arrays of one sample alone, upsampled,
    could exhaust the memory before anything is written)."""
    h, w = size
    if size_problem(h, w):
        raise ValueError(f"--size {h}x{w}: {size_problem(h, w)}, e.g. 128x256 or 256x512")
    if h > RAW_FRAME[0] or w > RAW_FRAME[1]:
        gib = h * w * FLOATS_PER_PIXEL * 4 / 2**30
        raise ValueError(f"--size {h}x{w}: larger than CityScapes' {RAW_FRAME[0]}x{RAW_FRAME[1]} frames, which a "
                         f"release downsamples; one sample would need {gib:.1f} GiB of arrays")


def parse_size(text):
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be HxW such as 128x256 or 256x512, got {text!r}") from None
    check_size((h, w))
    return h, w


def _package_files(raw, package, split, suffix):
    """{(city, frame): path relative to RAW} of the *suffix files of one package's split.

    A folder that cannot be listed is an error, never an empty city.
    """
    top = raw / package / split
    files = {}
    try:
        with os.scandir(top) as entries:
            cities = sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))
        for city in cities:
            with os.scandir(top / city) as entries:
                for entry in entries:
                    if entry.name.endswith(suffix) and not entry.name.startswith(".") and entry.is_file():
                        files[city, entry.name[: -len(suffix)]] = f"{package}/{split}/{city}/{entry.name}"
    except OSError as e:
        raise PrepareError(f"cannot list {e.filename}: {e.strerror}") from None
    return files


def _mismatches(raw, split, files, packages):
    """One line per city a package lacks entirely, else per file it lacks (orphans included)."""
    frames_by_city = {}
    for city, frame in sorted(set().union(*files.values())):
        frames_by_city.setdefault(city, []).append(frame)

    def name(field):  # gtFine holds two of a sample's files
        return "gtFine instanceIds" if field == "instance" else packages[field][0]

    def listing(names):
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"

    lines = []
    for city, frames in frames_by_city.items():
        for field, (package, suffix) in packages.items():
            lacking = [frame for frame in frames if (city, frame) not in files[field]]
            folder = raw / package / split / city
            if len(frames) > 1 and len(lacking) == len(frames):
                others = ", ".join(f"{name(other)} has {sum((city, f) in files[other] for f in frames)}"
                                   for other in packages if other != field)
                lines.append(f"{folder}: missing or without *{suffix} files ({others} of city {city}'s samples)")
                continue
            for frame in lacking:
                having = [name(other) for other in packages if (city, frame) in files[other]]
                lines.append(f"{folder / (frame + suffix)}: missing (the sample is in {listing(having)})")
    return lines


def list_samples(raw, splits):
    """{split: samples sorted by city then file name}; PrepareError if the raw tree is incomplete.

    The three packages' file lists must agree per split and city, and so must gtFine's
    *_instanceIds.png when there is any in the splits: then every sample has its `instance`,
    else none has. Every mismatch is listed (up to MAX_LISTED, the rest counted) in one error.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise PrepareError(f"--raw {raw} is not a folder")
    for split in splits:
        for package, _ in PACKAGES.values():
            if not (raw / package).is_dir():
                raise PrepareError(f"{raw / package} is missing: unpack the official {package}_trainvaltest.zip into {raw}")
            if not (raw / package / split).is_dir():
                raise PrepareError(f"{raw / package / split} is missing: the {package} package lacks the {split} split")
    packages = dict(PACKAGES, instance=INSTANCE_PACKAGE)
    files = {split: {field: _package_files(raw, package, split, suffix) for field, (package, suffix) in packages.items()}
             for split in splits}
    with_instances = any(split_files["instance"] for split_files in files.values())
    if not with_instances:
        packages.pop("instance")
        for split_files in files.values():
            split_files.pop("instance")
    mismatches = [line for split in splits for line in _mismatches(raw, split, files[split], packages)]
    if mismatches:
        instances = f", and its *{INSTANCE_PACKAGE[1]} as gtFine holds some," if with_instances else ""
        header = (f"the raw packages under {raw} do not match ({len(mismatches)} mismatch(es)); every "
                  f"{IMAGE_SUFFIX} image needs its label and disparity{instances} and vice versa, so nothing "
                  "was built:")
        more = [f"  ... and {len(mismatches) - MAX_LISTED} more"] if len(mismatches) > MAX_LISTED else []
        raise PrepareError("\n".join([header, *(f"  {line}" for line in mismatches[:MAX_LISTED]), *more]))
    samples = {}
    for split, split_files in files.items():
        images = split_files["image"]
        if not images:
            raise PrepareError(f"{raw / 'leftImg8bit' / split} holds no <city>/*{IMAGE_SUFFIX} images")
        keys = sorted(images, key=lambda key: (key[0], images[key]))  # city, then file name
        samples[split] = [Sample(city, *(split_files[field][city, frame] for field in packages)) for city, frame in keys]
    return samples


def _describe(array):
    return f"{array.dtype} array of shape {array.shape}"


def _check_instance_ids(instance_ids, shape):
    """Raise SampleError unless instance_ids is an 8- or 16-bit (h, w) map of gtFine instance ids:
    label id * 1000 + n on instances, the plain label id elsewhere (label ids of the official table)."""
    if instance_ids.dtype not in (np.uint8, np.uint16) or instance_ids.shape != shape:
        raise SampleError("instance", f"expected 16-bit (or 8-bit) instance ids of shape {shape} like the image, "
                                      f"got {_describe(instance_ids)}")
    present = np.flatnonzero(np.bincount(instance_ids.ravel()))
    classes = np.where(present >= 1000, present // 1000, present)
    bad = present[(classes >= KNOWN_IDS.size) | ~KNOWN_IDS[np.minimum(classes, KNOWN_IDS.size - 1)]]
    if bad.size:
        raise SampleError("instance", f"instance ids {bad[:10].tolist()} are neither label ids of the official "
                                      "Cityscapes table nor label id * 1000 + n")


def convert_sample(image_bgr, label_ids, disparity, size, instance_ids=None):
    """One raw sample -> {subdir: float32 array} in the release layout.

    image_bgr: uint8 (h, w, 3) as cv2 reads it; label_ids: uint8 (h, w) official label ids;
    disparity: uint16 (h, w) disparity PNG values, 0 = invalid; size: output (H, W);
    instance_ids: None, or uint16 (h, w) gtFine instance ids (>= 1000 on instances).
    Returns image (H, W, 3) RGB in [0, 1], label_7 and label_19 (H, W) with void -1,
    depth (H, W, 1) = disparity / 65535 and, given instance_ids, instance (H, W, 3): the
    offsets of data.instances.instance_target on the ids resized like the labels.
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
    if instance_ids is not None:
        _check_instance_ids(instance_ids, (h, w))

    dsize = (size[1], size[0])  # cv2 wants (width, height)
    # Resizing uint8 keeps the image in [0, 255], so it lands exactly in [0, 1].
    image = cv2.cvtColor(cv2.resize(image_bgr, dsize, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    labels = cv2.resize(label_ids, dsize, interpolation=cv2.INTER_NEAREST)
    disparity = cv2.resize(disparity, dsize, interpolation=cv2.INTER_NEAREST)
    converted = {
        IMAGE_DIR: image.astype(np.float32) / np.float32(255),
        label_dir(7): LUT_7[labels],
        label_dir(19): LUT_19[labels],
        DEPTH_DIR: (disparity.astype(np.float32) / np.float32(65535))[..., None],
    }
    if instance_ids is not None:
        converted[INSTANCE_DIR] = instance_target(cv2.resize(instance_ids, dsize, interpolation=cv2.INTER_NEAREST))
    return converted


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


class Writer:
    """Writes whole files into OUT for one run.

    Its first write removes COMPLETE, so OUT never carries the marker of a finished build
    while its content changes; finish() writes SHA256SUMS and then COMPLETE, last.
    """

    def __init__(self, out):
        self.out = out
        self._lock = threading.Lock()  # samples are written from a thread pool
        self._unmarked = False

    def write(self, rel, data):
        with self._lock:
            if not self._unmarked:
                (self.out / BUILD_COMPLETE).unlink(missing_ok=True)
                self._unmarked = True
        atomic.write_bytes(self.out / rel, data)

    def write_if_changed(self, rel, data):
        path = self.out / rel
        if not path.is_file() or path.read_bytes() != data:
            self.write(rel, data)

    def finish(self, sums):
        self.write_if_changed(BUILD_CHECKSUMS, sums)
        self.write_if_changed(BUILD_COMPLETE, completion_marker(sums))


def has_instances(samples):
    """Whether the samples carry instance ids (all do or none does: list_samples)."""
    return any(sample.instance is not None for split_samples in samples.values() for sample in split_samples)


def output_folders(samples):
    """The subfolders a build of `samples` writes per split."""
    return (*SUBDIRS, INSTANCE_DIR) if has_instances(samples) else SUBDIRS


def without_instances(samples):
    return {split: [sample._replace(instance=None) for sample in split_samples] for split, split_samples in samples.items()}


def index_csv_bytes(samples):
    """index.csv; its instance column only when the samples have instance ids (a version 1 build's index otherwise)."""
    instances = has_instances(samples)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("split", "index", "city", "image", "label", "disparity", *(["instance"] if instances else [])))
    for split, split_samples in samples.items():
        writer.writerows((split, i, *(sample if instances else sample[:-1])) for i, sample in enumerate(split_samples))
    return buffer.getvalue().encode()


def settings_bytes(size, samples):
    instances = has_instances(samples)
    settings = {
        "tool": "data.prepare_cityscapes",
        "format_version": FORMAT_VERSION,
        "size": list(size),
        "splits": list(samples),
        "counts": {split: len(split_samples) for split, split_samples in samples.items()},
        "folders": list(output_folders(samples)),
        "resize": {"image": "cv2.INTER_AREA", "labels": "cv2.INTER_NEAREST", "disparity": "cv2.INTER_NEAREST",
                   **({"instance ids": "cv2.INTER_NEAREST"} if instances else {})},
        "depth": "disparity PNG value / 65535, 0 = invalid",
        **({"instance": "gtFine *_instanceIds.png ids >= 1000, resized, then (dy, dx) from each instance pixel "
                        "to its instance's centroid and the instance mask (data/instances.py)"} if instances else {}),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    return (json.dumps(settings, indent=2) + "\n").encode()


def _first_difference(old, new):
    old_lines, new_lines = old.decode(errors="replace").splitlines(), new.decode().splitlines()
    for number, (a, b) in enumerate(zip(old_lines, new_lines), 1):
        if a != b:
            return f"line {number}: {a!r} there, {b!r} from --raw"
    number = min(len(old_lines), len(new_lines)) + 1
    return f"line {number}: {len(old_lines)} lines there, {len(new_lines)} from --raw"


def check_existing(out, size, splits, samples):
    """Refuse an OUT that holds another build (other raw files, size or splits), so builds never mix.

    A build without instance/ whose index equals the samples' without their instance column
    is the same build, to be upgraded; a build with instance/ rerun without instance ids is refused.
    """
    index_csv = index_csv_bytes(samples)
    settings_path, index_path = out / BUILD_SETTINGS, out / BUILD_INDEX
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
        if old_index == index_csv:
            return
        if has_instances(samples):
            if old_index == index_csv_bytes(without_instances(samples)):
                return  # the upgrade: the same raw files, now with their instance ids
        elif old_index.split(b"\n", 1)[0].endswith(b",instance"):
            raise PrepareError(
                f"{out} was built with instance/ from gtFine *{INSTANCE_PACKAGE[1]} files, which the gtFine under "
                "--raw lacks; rerun with the gtFine package that holds them, or choose a new --out")
        raise PrepareError(
            f"{index_path} does not match the raw files under --raw ({_first_difference(old_index, index_csv)}); "
            "refusing to mix two builds: choose a new --out")
    elif settings_path.is_file() or any((out / name).exists() for name in (*SPLITS, BUILD_CHECKSUMS, BUILD_COMPLETE)):
        raise PrepareError(f"{out} holds data but no {BUILD_INDEX}: not made by this tool; choose a new --out")


def process_sample(raw, out, split, i, sample, size, write=None):
    """Convert `sample` and make OUT/split/*/i.npy hold exactly that conversion.

    Each existing file is compared with the fresh conversion and written with `write(rel,
    data)` only when its bytes differ; write=None only compares (--verify). Returns
    ({relative path: sha256 of the conversion}, [(relative path, "missing" | "differs")]).
    """
    arrays = [read_png(raw / path) for path in (sample.image, sample.label, sample.disparity)]
    instance_ids = None if sample.instance is None else read_png(raw / sample.instance)
    try:
        converted = convert_sample(*arrays, size, instance_ids)
    except SampleError as e:
        raise PrepareError(f"{raw / getattr(sample, e.role)}: {e}") from None
    digests, changes = {}, []
    for kind, array in converted.items():
        rel, data = f"{split}/{kind}/{i}.npy", npy_bytes(array)
        digests[rel] = sha256(data)
        path = out / rel
        current = path.read_bytes() if path.is_file() else None
        if current != data:
            changes.append((rel, "missing" if current is None else "differs"))
            if write is not None:
                write(rel, data)
    return digests, changes


def prepare(raw, out, size=DEFAULT_SIZE, splits=SPLITS, verify=False, workers=DEFAULT_WORKERS):
    """Build (or finish, or repair, or with verify=True check) the release in `out`; see the module docstring.

    Returns {"samples": {split: count}, "folders": subfolders per split, "written": [relative
    .npy paths written]}; raises PrepareError on a bad raw tree or output folder, and when
    verify finds a difference.
    """
    raw, out = Path(raw), Path(out)
    check_size(size)
    splits = [split for split in SPLITS if split in splits]  # canonical order, no repeats
    samples = list_samples(raw, splits)
    index_csv, settings = index_csv_bytes(samples), settings_bytes(size, samples)
    if verify and not (out / BUILD_SETTINGS).is_file():
        raise PrepareError(f"{out / BUILD_SETTINGS} is missing: nothing to verify")
    check_existing(out, size, splits, samples)
    folders = output_folders(samples)
    writer = Writer(out)  # not used by verify
    if not verify:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.rglob(atomic.TEMPORARIES):  # left by an interrupted run
            stale.unlink()
        # index.csv first: from here on a rerun from another raw tree is refused.
        writer.write_if_changed(BUILD_INDEX, index_csv)
        writer.write_if_changed(BUILD_SETTINGS, settings)
        for split in splits:
            for kind in folders:
                (out / split / kind).mkdir(parents=True, exist_ok=True)

    digests = {BUILD_INDEX: sha256(index_csv), BUILD_SETTINGS: sha256(settings)}
    changes = []
    for split in splits:
        with ThreadPoolExecutor(workers) as pool:  # cv2 decoding and resizing release the GIL
            futures = [pool.submit(process_sample, raw, out, split, i, sample, size, None if verify else writer.write)
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
    counts = {split: len(split_samples) for split, split_samples in samples.items()}

    if not verify:
        writer.finish(sums)
        return {"samples": counts, "folders": folders, "written": [rel for rel, _ in changes]}
    for name, data in ((BUILD_INDEX, index_csv), (BUILD_SETTINGS, settings), (BUILD_CHECKSUMS, sums),
                       (BUILD_COMPLETE, completion_marker(sums))):
        path = out / name
        if not path.is_file() or path.read_bytes() != data:
            changes.append((name, "missing" if not path.is_file() else "differs"))
    if changes:
        listed = ", ".join(f"{rel} ({why})" for rel, why in changes[:10])
        more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
        raise PrepareError(f"{out} differs from a fresh build in {len(changes)} file(s): {listed}{more}")
    return {"samples": counts, "folders": folders, "written": []}


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False,
        prog="python3 -m data.prepare_cityscapes",
        description="Build the .npy CityScapes release (image, label_7, label_19, depth, and instance when "
                    "gtFine holds *_instanceIds.png) from the raw leftImg8bit, gtFine and disparity packages. "
                    "A rerun completes, repairs or upgrades OUT (adding instance/).")
    parser.add_argument("--raw", required=True, type=Path,
                        help="folder holding leftImg8bit/, gtFine/ and disparity/ of the official packages")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; a rerun completes it)")
    parser.add_argument("--size", default="128x256",
                        help=f"output HxW, both multiples of {SIZE_MULTIPLE} (default 128x256, the release size; "
                             f"also 256x512)")
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
        written, total = len(report["written"]), len(report["folders"]) * sum(report["samples"].values())
        print(f"{args.out}: {counts} samples ({', '.join(report['folders'])}); {written} .npy file(s) written, "
              f"{total - written} already equal to the conversion; checksums in {args.out / BUILD_CHECKSUMS}, "
              f"build marked {BUILD_COMPLETE}")
        if INSTANCE_DIR not in report["folders"]:
            print(f"no instance/: the gtFine under {args.raw} holds no *{INSTANCE_PACKAGE[1]}, so this release "
                  "serves the semantic and depth tasks only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
