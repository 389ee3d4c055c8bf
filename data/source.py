"""Which data a run trains on: the real release, SynthCity, or a folder given by path.

The real release is used only when it is really there; without a --dataset or
--data-path, a missing release falls back to SynthCity and says so. A path or dataset the
user named that does not hold a valid release is an error, never a silent fallback, and so
is a broken or unfinished release at the default place.
"""
from dataclasses import dataclass
from pathlib import Path

from . import synthcity
from .check import DatasetError, quick_check
from .layout import BUILD_SETTINGS, DEPTH_DIR, IMAGE_DIR, SPLITS, SYNTHETIC_MARKER, label_dir, size_problem

REPO_ROOT = Path(__file__).resolve().parent.parent
CITYSCAPES_ROOT = REPO_ROOT / "dataset" / "cityscapes"
SYNTHCITY_ROOT = REPO_ROOT / "dataset" / "synthcity"
DATASETS = ("cityscapes", "synthcity")
GET_THE_DATA = "see 'Getting the data' in README.md (or dataset/cityscapes/README.md)"


@dataclass(frozen=True)
class DataSource:
    name: str          # "cityscapes" or "synthcity"
    root: Path
    synthetic: bool
    metadata: dict | None  # SynthCity's own description of the data, None for real data


def parse_image_size(text):
    """'HxW' → (H, W), a size the network takes (data.layout.size_problem)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--image-size {text!r}: expected HxW, e.g. 128x256") from None
    if size_problem(height, width):
        raise ValueError(f"--image-size {text}: {size_problem(height, width)}")
    return height, width


def open_release(root, num_classes):
    """The DataSource of a dataset root that passes the quick check (DatasetError if not)."""
    quick_check(root, (IMAGE_DIR, label_dir(num_classes), DEPTH_DIR))
    metadata = synthcity.read_metadata(root)
    return DataSource("cityscapes" if metadata is None else "synthcity", Path(root), metadata is not None, metadata)


def _holds_a_release(root):
    """Something of a release is at root (a split or the builder's prepare.json), valid or not."""
    return any((Path(root) / name).exists() for name in (*SPLITS, BUILD_SETTINGS))


def _synthcity(image_size, n_train, n_val):
    height, width = image_size
    root = synthcity.cached(SYNTHCITY_ROOT, n_train=n_train, n_val=n_val, height=height, width=width)
    return DataSource("synthcity", root, True, synthcity.read_metadata(root))


def resolve(dataset, data_path, image_size, num_classes, synth_train, synth_val, announce=print):
    """The DataSource for the CLI's --dataset, --data-path and --image-size (text or None).
    When the choice of SynthCity is made for the user, `announce` tells them first."""
    if image_size is not None and (data_path is not None or dataset == "cityscapes"):
        raise ValueError("--image-size applies only to generated SynthCity data; a release's size comes from its files")
    size = parse_image_size(image_size or "128x256")
    if data_path is not None:
        try:
            source = open_release(data_path, num_classes)
        except DatasetError as e:
            raise DatasetError(f"--data-path {data_path} does not hold a valid release:\n{e}") from None
        if dataset is not None and dataset != source.name:
            raise ValueError(f"--dataset {dataset} but --data-path {data_path} holds {source.name} data "
                             f"(SynthCity output is marked by its {SYNTHETIC_MARKER})")
        return source
    if dataset == "synthcity":
        return _synthcity(size, synth_train, synth_val)
    try:
        return open_release(CITYSCAPES_ROOT, num_classes)
    except DatasetError as e:
        if dataset == "cityscapes":
            raise DatasetError(f"--dataset cityscapes: no valid release at {CITYSCAPES_ROOT}; {GET_THE_DATA}.\n{e}") from None
        if _holds_a_release(CITYSCAPES_ROOT):  # e.g. an interrupted build: fix it, never train on something else
            raise DatasetError(f"{CITYSCAPES_ROOT} holds a release that fails its check; repair it, or pass "
                               f"--dataset synthcity to train on SynthCity.\n{e}") from None
    announce(f"No CityScapes release at {CITYSCAPES_ROOT}: using SynthCity, a synthetic stand-in "
             f"(results are not comparable with published CityScapes numbers). For the real data {GET_THE_DATA}.",
             flush=True)
    return _synthcity(size, synth_train, synth_val)
