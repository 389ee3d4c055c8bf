"""What a dataset is: the contract between the dataset registry (data/datasets/__init__.py) and
the code that finds, identifies, checks and judges data (docs/design.md, "How to add a dataset").

A dataset declares its --dataset name, where its data comes from (a default root, the file
that marks a root as its own, whether it is generated on demand or must be got by the user),
what identifies a copy of it in config.json, what the check says a root of it lacks, and
whether published CityScapes numbers can apply to it. data/source.py, data/identity.py,
data/check.py and evaluation/delta_m.py iterate the registry and never name a dataset.
"""
from pathlib import Path

DATASET_DIR = Path(__file__).resolve().parents[2] / "dataset"  # the repository's git-ignored data folder


class Dataset:
    """Base class of a dataset; one instance in the registry. Subclasses set the class
    attributes and implement `identity`, and `generate` when `generated`.

    name: the --dataset name, recorded as config.json's data.name.
    title: its name in messages.
    synthetic: recorded as config.json's data.synthetic.
    marker: the file that marks a root as this dataset's; None for the one dataset that a
        root without any registered marker is taken for.
    default_root: where it is looked for, or generated, when no --data-path is given.
    generated: made on demand by `generate`; otherwise a release the user gets (`how_to_get`).
    how_to_get: where a release comes from, for messages (a dataset that is not generated).
    description: what it is, for the message that announces it as the fallback (a generated one).
    not_comparable: why published CityScapes numbers cannot apply to it (Δm's baseline), or
        None where they can (then only to the 7-class 128x256 release, evaluation/delta_m.py).
    missing_instances: why a root of it has no instance/ and how to get one with it, for the
        check (data/check.py); a release of the raw builder says so itself.
    """

    name: str = ""
    title: str = ""
    synthetic: bool = False
    marker: str | None = None
    default_root: Path
    generated: bool = False
    how_to_get: str = ""
    description: str = ""
    not_comparable: str | None = None
    missing_instances: str = ""

    def metadata(self, root: Path) -> dict | None:
        """Its own description of the data at root, recorded in config.json (data.synthcity), or None."""
        return None

    def identity(self, root: Path) -> dict:
        """Which data `root` holds, as a small JSON-serialisable value (data/identity.py): equal
        identities mean the same data. Must not read the data files (it runs at every start)."""
        raise NotImplementedError

    def content_problems(self, root: Path) -> list[str]:
        """What the deep check (data/check.py) finds wrong with the bytes of the data at root
        against the dataset's own record of them; none by default."""
        return []

    def generate(self, image_size: tuple[int, int], n_train: int, n_val: int) -> Path:
        """The root of its data of this size and these sample counts under default_root,
        made now if missing (a generated dataset)."""
        raise NotImplementedError
