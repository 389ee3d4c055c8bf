"""Which data a run trains on: a registered dataset (data/datasets/) or a folder given by path.

A release the user gets is used only when it is really there; without a --dataset or
--data-path, a missing one falls back to the first generated dataset and says so. A path or
dataset the user named that does not hold a valid release is an error, never a silent
fallback, and so is a broken or unfinished release at a dataset's default place.
"""
from dataclasses import dataclass
from pathlib import Path

from .check import DatasetError, quick_check
from .datasets import DATASETS, dataset_of
from .layout import BUILD_SETTINGS, DEPTH_DIR, IMAGE_DIR, SPLITS, label_dir, size_problem


@dataclass(frozen=True)
class DataSource:
    name: str          # the dataset's --dataset name
    root: Path
    synthetic: bool
    metadata: dict | None  # the dataset's own description of the data (SynthCity's), else None


def parse_image_size(text):
    """'HxW' → (H, W), a size the network takes (data.layout.size_problem)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--image-size {text!r}: expected HxW, e.g. 128x256") from None
    if size_problem(height, width):
        raise ValueError(f"--image-size {text}: {size_problem(height, width)}")
    return height, width


def _source(dataset, root):
    return DataSource(dataset.name, Path(root), dataset.synthetic, dataset.metadata(root))


def open_release(root, num_classes):
    """The DataSource of a dataset root that passes the quick check (DatasetError if not)."""
    quick_check(root, (IMAGE_DIR, label_dir(num_classes), DEPTH_DIR))
    return _source(dataset_of(root), root)


def _holds_a_release(root):
    """Something of a release is at root (a split or the builder's prepare.json), valid or not."""
    return any((Path(root) / name).exists() for name in (*SPLITS, BUILD_SETTINGS))


def _generated(dataset, size, n_train, n_val):
    return _source(dataset, dataset.generate(size, n_train, n_val))


def _by_path(data_path, dataset, num_classes):
    """The release at --data-path, which must be of --dataset when one is given."""
    try:
        source = open_release(data_path, num_classes)
    except DatasetError as e:
        raise DatasetError(f"--data-path {data_path} does not hold a valid release:\n{e}") from None
    if dataset is not None and dataset != source.name:
        markers = "; ".join(f"{d.title} output is marked by its {d.marker}" for d in DATASETS.values() if d.marker)
        raise ValueError(f"--dataset {dataset} but --data-path {data_path} holds {source.name} data ({markers})")
    return source


def _by_name(chosen, size, num_classes, n_train, n_val):
    """--dataset alone: generated, or its release at its default root."""
    if chosen.generated:
        return _generated(chosen, size, n_train, n_val)
    try:
        return open_release(chosen.default_root, num_classes)
    except DatasetError as e:
        raise DatasetError(f"--dataset {chosen.name}: no valid release at {chosen.default_root}; "
                           f"{chosen.how_to_get}.\n{e}") from None


def _by_default(size, num_classes, n_train, n_val, announce):
    """Neither flag: the first release the user gets that is at its default root, else the
    first generated dataset, announced. A broken release there is an error, not skipped."""
    got = [d for d in DATASETS.values() if not d.generated]
    fallback = next(d for d in DATASETS.values() if d.generated)
    for candidate in got:
        try:
            return open_release(candidate.default_root, num_classes)
        except DatasetError as e:
            if _holds_a_release(candidate.default_root):  # e.g. an interrupted build: fix it, never train on another
                raise DatasetError(f"{candidate.default_root} holds a release that fails its check; repair it, or "
                                   f"pass --dataset {fallback.name} to train on {fallback.title}.\n{e}") from None
    missing = " or ".join(f"{d.title} release at {d.default_root}" for d in got)
    announce(f"No {missing}: using {fallback.title}, {fallback.description}. For the real data "
             f"{'; '.join(d.how_to_get for d in got)}.", flush=True)
    return _generated(fallback, size, n_train, n_val)


def resolve(dataset, data_path, image_size, num_classes, synth_train, synth_val, announce=print):
    """The DataSource for the CLI's --dataset, --data-path and --image-size (text or None).
    When the choice of a generated dataset is made for the user, `announce` tells them first."""
    if image_size is not None and (data_path is not None or (dataset is not None and not DATASETS[dataset].generated)):
        generated = " or ".join(d.title for d in DATASETS.values() if d.generated)
        raise ValueError(f"--image-size applies only to generated {generated} data; a release's size comes from "
                         "its files")
    size = parse_image_size(image_size or "128x256")
    if data_path is not None:
        return _by_path(data_path, dataset, num_classes)
    if dataset is not None:
        return _by_name(DATASETS[dataset], size, num_classes, synth_train, synth_val)
    return _by_default(size, num_classes, synth_train, synth_val, announce)
