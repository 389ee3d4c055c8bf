"""SynthCity (docs/design.md, "SynthCity"): the procedural stand-in of data/synthcity.py, generated
on demand into a cache under dataset/synthcity/, one folder per set of generation parameters,
each marked by its synthcity.json."""
from data import synthcity
from data.layout import SYNTHETIC_MARKER

from .base import DATASET_DIR, Dataset


class SynthCity(Dataset):
    name = "synthcity"
    title = "SynthCity"
    synthetic = True
    marker = SYNTHETIC_MARKER
    default_root = DATASET_DIR / "synthcity"
    generated = True
    description = "a synthetic stand-in (results are not comparable with published CityScapes numbers)"
    not_comparable = "SynthCity data is synthetic"
    missing_instances = ("this SynthCity data comes from a generator version without instance targets; "
                         "generate it again (python3 -m data.synthcity, or --dataset synthcity for the cached copy)")

    def metadata(self, root):
        return synthcity.read_metadata(root)

    def identity(self, root):
        """{"kind": "synthcity", "generator": its metadata, every generation parameter and the
        generator's version}: the data are regenerated from these."""
        return {"kind": "synthcity", "generator": synthcity.read_metadata(root)}

    def content_problems(self, root):
        """Its arrays against the SHA-256 that synthcity.json records of what was generated."""
        metadata = synthcity.read_metadata(root) or {}
        if "sha256" not in metadata:  # generated before the record (version 2 and older)
            return []
        found = synthcity.content_digest(root, metadata["n_train"], metadata["n_val"])
        if found == metadata["sha256"]:
            return []
        return [(f"{root}: the arrays' SHA-256 is {found}, not the {metadata['sha256']} its {self.marker} records: "
                 f"the data changed after it was generated; generate it again (python3 -m data.synthcity)")]

    def generate(self, image_size, n_train, n_val):
        height, width = image_size
        return synthcity.cached(self.default_root, n_train=n_train, n_val=n_val, height=height, width=width)
