"""Which data a dataset root holds, as a small JSON-serialisable value for config.json.

Two runs trained on equal identities trained on the same data (up to what each dataset can
tell), so runs can be grouped by it, and a resumed run checks that its data did not change.
Each dataset defines its own (Dataset.identity in data/datasets/): the generator's parameters
for generated data, a checksum file or the list of file names and sizes for a release. No
data file is read, so it costs milliseconds.
"""
from pathlib import Path

from data.datasets import dataset_of


def data_identity(root):
    """The identity of the data at `root`, as the dataset it holds defines it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    return dataset_of(root).identity(root)
