import os
import traceback

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.check import DatasetError
from data.cityscapes import CityscapesNpy
from tasks import DEFAULT_TASKS, TaskSettings, build_tasks

H, W = 32, 64
COUNTS = {"train": 4, "val": 2}


def known_sample(split, i):
    """Arrays with values that identify the sample; void -1 and invalid depth 0 included."""
    offset = (0 if split == "train" else 10) + i
    rng = np.random.default_rng(offset)
    label_19 = rng.integers(0, 19, (H, W)).astype(np.float32)
    label_19[12:20] = -1  # inside every augmentation window
    depth = rng.uniform(0.01, 0.5, (H, W, 1)).astype(np.float32)
    depth[label_19 == -1] = 0
    return {
        "image": np.full((H, W, 3), offset / 100, np.float32) + rng.random((H, W, 3), dtype=np.float32) / 2,
        "label_7": np.where(label_19 == -1, -1, label_19 % 7).astype(np.float32),
        "label_19": label_19,
        "depth": depth,
    }


def dataset_of(root, split, num_classes=7, depth_rule="divide", tasks=DEFAULT_TASKS, **options):
    return CityscapesNpy(root, split, build_tasks(tasks, TaskSettings(num_classes, depth_rule)), **options)


def flat(item):
    """(image, target, ...) of an item or a batch (image, {task: target})."""
    image, targets = item
    return (image, *targets.values())


@pytest.fixture
def root(tmp_path):
    for split, n in COUNTS.items():
        for i in range(n):
            for sub, array in known_sample(split, i).items():
                os.makedirs(tmp_path / split / sub, exist_ok=True)
                np.save(tmp_path / split / sub / f"{i}.npy", array)
    return tmp_path


def assert_same(a, b):
    a, b = flat(a), flat(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_items_without_augmentation_are_the_files(root):
    dataset = dataset_of(root, "val")
    assert len(dataset) == 2 and dataset.image_size == (H, W)
    image, targets = dataset[1]
    assert list(targets) == ["semantic", "depth"]
    label, depth = targets["semantic"], targets["depth"]
    assert (image.dtype, label.dtype, depth.dtype) == (torch.float32, torch.int64, torch.float32)
    assert (image.shape, label.shape, depth.shape) == ((3, H, W), (H, W), (1, H, W))
    expected = known_sample("val", 1)
    np.testing.assert_array_equal(image.numpy(), expected["image"].transpose(2, 0, 1))
    np.testing.assert_array_equal(label.numpy(), expected["label_7"])
    np.testing.assert_array_equal(depth.numpy()[0], expected["depth"][..., 0])
    assert label.min() == -1 and label.max() <= 6


def test_19_classes_read_label_19(root):
    label = dataset_of(root, "train", num_classes=19)[0][1]["semantic"]
    np.testing.assert_array_equal(label.numpy(), known_sample("train", 0)["label_19"])
    assert label.max() > 6


def test_augmentation_is_a_function_of_seed_epoch_index(root):
    dataset = dataset_of(root, "train", augment=True, seed=3)
    again = dataset_of(root, "train", augment=True, seed=3)
    other_seed = dataset_of(root, "train", augment=True, seed=4)
    for i in range(len(dataset)):
        assert_same(dataset[i], again[i])
    epoch0 = [dataset[i] for i in range(len(dataset))]
    dataset.set_epoch(1)
    assert dataset.epoch == 1
    assert any(not torch.equal(dataset[i][1]["semantic"], epoch0[i][1]["semantic"]) for i in range(len(dataset)))
    assert any(not torch.equal(other_seed[i][1]["semantic"], epoch0[i][1]["semantic"]) for i in range(len(dataset)))
    again.set_epoch(1)
    for i in range(len(dataset)):
        assert_same(dataset[i], again[i])


def test_augmented_labels_keep_void(root):
    dataset = dataset_of(root, "train", augment=True, depth_rule="multiply")
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            _, label, depth = flat(dataset[i])
            assert label.dtype == torch.int64 and (label == -1).any()
            assert torch.equal(label == -1, depth[0] == 0)


def batches(dataset, batch_size=2, **loader_args):
    return list(DataLoader(dataset, batch_size=batch_size, shuffle=False, **loader_args))


@pytest.mark.usefixtures("seeded_and_restored")
def test_workers_do_not_change_the_samples(root):
    dataset = dataset_of(root, "train", augment=True, seed=1)
    dataset.set_epoch(2)
    in_process = batches(dataset, num_workers=0)
    for a, b in zip(in_process, batches(dataset, num_workers=2)):
        assert_same(a, b)


@pytest.mark.usefixtures("seeded_and_restored")
def test_persistent_workers_see_set_epoch(root):
    dataset = dataset_of(root, "train", augment=True)
    loader = DataLoader(dataset, batch_size=4, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        (batch,) = list(loader)
        assert_same(batch, batches(dataset, batch_size=4)[0])
        seen.append(batch[1]["semantic"])
    assert not torch.equal(*seen)


def test_in_memory_matches_disk_and_is_not_aliased(root):
    on_disk = dataset_of(root, "train", augment=True)
    in_memory = dataset_of(root, "train", augment=True, in_memory=True)
    for plain in (False, True):
        on_disk.augment = in_memory.augment = plain
        for i in range(len(on_disk)):
            item = in_memory[i]
            assert_same(item, on_disk[i])
            for tensor in flat(item):
                tensor.fill_(7)
            assert_same(in_memory[i], on_disk[i])


def test_the_unaugmented_view_shares_the_samples_in_ram_and_leaves_the_split_augmented(root):
    augmented = dataset_of(root, "train", augment=True, in_memory=True)
    view = augmented.without_augmentation()
    assert view._samples is augmented._samples and augmented.augment and not view.augment
    plain = dataset_of(root, "train")
    for i in range(len(plain)):
        assert_same(view[i], plain[i])


def test_unreadable_file_is_named(root):
    dataset = dataset_of(root, "train")
    path = root / "train" / "depth" / "2.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match=str(path)):
        dataset[2]


def test_broken_root_fails_at_construction(root):
    os.remove(root / "train" / "image" / "3.npy")
    with pytest.raises(DatasetError, match="3.npy: missing file"):
        dataset_of(root, "train")
    with pytest.raises(DatasetError, match="nowhere: data folder not found"):
        dataset_of(root / "nowhere", "val")


def test_bad_arguments_are_refused(root):
    with pytest.raises(ValueError, match="split"):
        dataset_of(root, "test")
    with pytest.raises(ValueError, match="classes"):
        dataset_of(root, "train", num_classes=8)
    with pytest.raises(ValueError, match="depth rule"):
        dataset_of(root, "train", depth_rule="log")
    with pytest.raises(IndexError):
        dataset_of(root, "val")[2]


def filled(value):
    return lambda array: np.full_like(array, value)


@pytest.mark.parametrize("split, sub, change, shown", [
    ("train", "label_7", filled(6.5), "label values 6.5 (2048 pixels)"),
    ("train", "label_7", filled(0.9), "label values 0.9 (2048 pixels)"),
    ("train", "label_7", filled(-1.5), "label values -1.5 (2048 pixels)"),
    ("train", "label_7", filled(255), "label values 255 (2048 pixels)"),
    ("train", "label_7", filled(-7), "label values -7 (2048 pixels)"),
    ("train", "label_7", filled(np.nan), "label values nan (2048 pixels)"),
    ("train", "image", lambda image: image * 255, "values outside [0, 1]"),
    ("train", "depth", lambda depth: -depth, "negative values"),
    ("val", "label_7", filled(6.5), "label values 6.5 (2048 pixels)"),
])
def test_bad_values_are_refused_as_they_are_loaded(root, split, sub, change, shown):
    path = root / split / sub / "1.npy"
    np.save(path, change(np.load(path)))
    dataset = dataset_of(root, split, augment=split == "train")  # the header check cannot see values
    dataset[0]
    with pytest.raises(DatasetError) as error:
        dataset[1]
    assert str(error.value).startswith(f"{path}: ") and shown in str(error.value)
    with pytest.raises(DatasetError, match=str(path)):
        dataset_of(root, split, in_memory=True)


@pytest.mark.usefixtures("seeded_and_restored")
def test_bad_values_raise_dataset_error_from_loader_workers(root):
    path = root / "train" / "label_7" / "3.npy"
    np.save(path, np.full((H, W), 255, np.float32))
    loader = DataLoader(dataset_of(root, "train"), batch_size=1, num_workers=2)
    with pytest.raises(DatasetError) as error:  # the type survives the worker boundary
        list(loader)
    assert f"{path}: label values 255" in str(error.value)
    # Free the loader's iterator now: left to the garbage collector, torch waits 10 s for its workers.
    traceback.clear_frames(error.tb)


def test_unfinished_build_fails_at_construction(root):
    (root / "prepare.json").write_text('{"size": [32, 64], "splits": ["train", "val"]}')
    with pytest.raises(DatasetError, match="unfinished"):
        dataset_of(root, "val")
