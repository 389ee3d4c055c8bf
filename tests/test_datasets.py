"""The dataset registry: datasets are data. A dataset registered in this test alone (one class,
one registry line) is a --dataset choice, is found at its default root and by its marker, has
its own identity, and its own words in the check, without another edit."""
import json
import shutil

import pytest

from data import source
from data.check import DatasetError, quick_check
from data.datasets import DATASETS, Dataset, dataset_of
from data.identity import data_identity
from data.layout import SYNTHETIC_MARKER
from experiment.flags import build_parser

FOLDERS = ("image", "label_7", "depth")


class Harbour(Dataset):
    """A third dataset: a release the user gets, marked by harbour.json."""

    name = "harbour"
    title = "Harbour"
    marker = "harbour.json"
    how_to_get = "ask the harbour master"
    not_comparable = "Harbour is another city's data"
    missing_instances = "Harbour releases have no instance labels"

    def identity(self, root):
        return {"kind": "harbour", "version": json.loads((root / self.marker).read_text())["version"]}


@pytest.fixture
def harbour(tiny_synthcity, tmp_path, monkeypatch):
    """Harbour registered (after the real release, before SynthCity), with a release at its default root."""
    dataset = Harbour()
    dataset.default_root = tmp_path / "harbour"
    shutil.copytree(tiny_synthcity, dataset.default_root)
    (dataset.default_root / SYNTHETIC_MARKER).unlink()
    (dataset.default_root / dataset.marker).write_text(json.dumps({"version": 3}))
    registry = {"cityscapes": DATASETS["cityscapes"], "harbour": dataset, "synthcity": DATASETS["synthcity"]}
    monkeypatch.setattr(DATASETS["cityscapes"], "default_root", tmp_path / "no-release")
    for name in list(DATASETS):
        monkeypatch.delitem(DATASETS, name)
    for name, registered in registry.items():
        monkeypatch.setitem(DATASETS, name, registered)  # the one registry line
    return dataset


def test_one_dataset_takes_the_unmarked_roots_and_one_is_generated():
    assert [d.name for d in DATASETS.values() if d.marker is None] == ["cityscapes"]
    assert [d.name for d in DATASETS.values() if d.generated] == ["synthcity"]
    assert all(name == d.name and d.title and d.missing_instances for name, d in DATASETS.items())


def test_a_root_is_the_dataset_whose_marker_it_holds(tiny_synthcity, tmp_path):
    assert dataset_of(tiny_synthcity).name == "synthcity"
    assert dataset_of(tmp_path).name == "cityscapes"


def test_a_registered_dataset_is_a_dataset_choice(harbour):
    assert build_parser().parse_args(["--dataset", "harbour"]).dataset == "harbour"


def test_a_registered_dataset_is_found_by_name_by_path_and_by_default(harbour):
    announced = []
    for chosen in (source.resolve("harbour", None, None, 7, 8, 4),
                   source.resolve(None, str(harbour.default_root), None, 7, 8, 4),
                   source.resolve(None, None, None, 7, 8, 4, announce=announced.append)):
        assert (chosen.name, chosen.root, chosen.synthetic) == ("harbour", harbour.default_root, False)
    assert not announced  # found at its default root before the generated fallback
    with pytest.raises(ValueError, match="--dataset synthcity but --data-path .* holds harbour data .*Harbour output "
                                         "is marked by its harbour.json"):
        source.resolve("synthcity", str(harbour.default_root), None, 7, 8, 4)
    with pytest.raises(ValueError, match="--image-size applies only to generated SynthCity data"):
        source.resolve("harbour", None, "64x128", 7, 8, 4)


def test_a_missing_registered_release_says_how_to_get_it_and_the_fallback_names_it(harbour, tmp_path, monkeypatch):
    monkeypatch.setattr(harbour, "default_root", tmp_path / "no-harbour")
    with pytest.raises(DatasetError, match="--dataset harbour: no valid release at .*no-harbour; ask the harbour master"):
        source.resolve("harbour", None, None, 7, 8, 4)
    monkeypatch.setattr(DATASETS["synthcity"], "default_root", tmp_path / "synthcity")
    announced = []
    chosen = source.resolve(None, None, "32x64", 7, 8, 4, announce=lambda line, flush: announced.append(line))
    assert chosen.name == "synthcity" and chosen.synthetic
    [line] = announced
    assert line == (f"No CityScapes release at {tmp_path / 'no-release'} or Harbour release at {tmp_path / 'no-harbour'}: "
                    "using SynthCity, a synthetic stand-in (results are not comparable with published CityScapes "
                    "numbers). For the real data see docs/data.md, \"Getting the data\" (or dataset/cityscapes/README.md); "
                    "ask the harbour master.")


def test_a_registered_dataset_has_its_own_identity_and_check(harbour):
    assert data_identity(harbour.default_root) == {"kind": "harbour", "version": 3}
    for split in ("train", "val"):
        shutil.rmtree(harbour.default_root / split / "instance")
    with pytest.raises(DatasetError, match="missing: the instance task reads .*Harbour releases have no instance"):
        quick_check(harbour.default_root, (*FOLDERS, "instance"))
