"""The dataset registry (docs/design.md, "How to add a dataset"): one module per dataset, one line here.

DATASETS maps each --dataset name to its dataset. Its order is the order in which a run given
neither --dataset nor --data-path looks for data (data/source.py): the first dataset that is
not generated and whose release is at its default root, else the first generated one.
"""
import pkgutil
from pathlib import Path

from .base import Dataset

# One line per dataset: "module:Class".
DATASETS: dict[str, Dataset] = {dataset.name: dataset for dataset in (pkgutil.resolve_name(path)() for path in (
    "data.datasets.cityscapes:CityscapesRelease",
    "data.datasets.synthcity:SynthCity",
))}


def dataset_of(root) -> Dataset:
    """The dataset `root` holds: the one whose marker file is there, else the unmarked one."""
    marked = (d for d in DATASETS.values() if d.marker is not None and (Path(root) / d.marker).is_file())
    return next(marked, None) or next(d for d in DATASETS.values() if d.marker is None)


def dataset_named(name) -> Dataset:
    """The dataset registered as `name` (e.g. a run folder's data.name); ValueError naming the
    registered ones for another."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not registered (data/datasets/: {', '.join(DATASETS)})")
    return DATASETS[name]


__all__ = ["DATASETS", "Dataset", "dataset_named", "dataset_of"]
