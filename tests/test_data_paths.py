"""A release's files stay inside its root and its splits apart; SHA256SUMS is verified by the
deep check; a resumed run refuses data changed under it (docs/design.md, "Release layout")."""
import hashlib
import json
import os
import shutil
from datetime import datetime

import numpy as np
import pytest

import main_cityscapes
from data.check import DatasetError, check_dataset, main, quick_check
from data.file_stats import describe_changes
from tests.test_check import COUNTS, FOLDERS, write_checksums, write_sample


@pytest.fixture
def root(tmp_path):
    for split, n in COUNTS.items():
        for i in range(n):
            write_sample(tmp_path / "release", split, i)
    return tmp_path / "release"


def problems(root, **kwargs):
    with pytest.raises(DatasetError) as error:
        check_dataset(root, **kwargs)
    return str(error.value)


# --- symlinks -----------------------------------------------------------------------------


def test_a_symlinked_root_passes(root, tmp_path):
    (tmp_path / "link").symlink_to(root)
    assert check_dataset(tmp_path / "link")["splits"] == COUNTS
    assert quick_check(tmp_path / "link", FOLDERS)["splits"] == COUNTS


def test_symlinks_inside_the_root_pass(root):
    (root / "store").mkdir()
    shutil.move(root / "val" / "depth" / "1.npy", root / "store" / "1.npy")
    (root / "val" / "depth" / "1.npy").symlink_to("../../store/1.npy")
    assert check_dataset(root)["splits"] == COUNTS


def test_val_linked_to_train_is_refused(root, capsys):
    shutil.rmtree(root / "val")
    (root / "val").symlink_to("train")
    message = problems(root, deep=False)
    assert (f"{root / 'val'}: resolves to the same folder as {root / 'train'} ({root / 'train'}); "
            "the splits must be distinct folders") in message
    assert "(1 problem)" in message  # not once more per file
    assert main(["--data-path", str(root)]) == 1
    assert "the splits must be distinct folders" in capsys.readouterr().err


def test_a_subfolder_linked_to_the_other_split_shares_its_files(root):
    shutil.rmtree(root / "val" / "image")
    (root / "val" / "image").symlink_to("../train/image")
    message = problems(root, deep=False)
    assert (f"{root / 'val' / 'image' / '0.npy'}: resolves to {root / 'train' / 'image' / '0.npy'}, the same file "
            f"as {root / 'train' / 'image' / '0.npy'} of the train split; a sample belongs to one split only") in message


def test_a_sample_linked_to_a_file_of_the_other_split_is_refused(root):
    path = root / "val" / "label_7" / "1.npy"
    path.unlink()
    path.symlink_to(root / "train" / "label_7" / "3.npy")
    message = problems(root, deep=False)
    assert f"{path}: resolves to {root / 'train' / 'label_7' / '3.npy'}, the same file as" in message
    assert "(1 problem)" in message


def test_a_sample_linked_outside_the_root_is_refused(root, tmp_path):
    outside = tmp_path / "elsewhere.npy"
    shutil.copy(root / "train" / "depth" / "2.npy", outside)
    path = root / "train" / "depth" / "2.npy"
    path.unlink()
    path.symlink_to(outside)
    for deep in (False, True):
        assert (f"{path}: resolves to {outside}, outside the data root {root}; a release's folders and files must "
                "lie inside its root") in problems(root, deep=deep)


def test_a_split_linked_outside_the_root_is_refused_once(root, tmp_path):
    shutil.move(root / "val", tmp_path / "val_elsewhere")
    (root / "val").symlink_to(tmp_path / "val_elsewhere")
    message = problems(root, deep=False)
    assert f"{root / 'val'}: resolves to {tmp_path / 'val_elsewhere'}, outside the data root {root}" in message
    assert "(1 problem)" in message


# --- SHA256SUMS ---------------------------------------------------------------------------


def test_checksums_are_verified_by_the_deep_check(root):
    write_checksums(root)
    assert check_dataset(root)["splits"] == COUNTS
    path = root / "train" / "image" / "1.npy"
    image = np.load(path)
    image[0, 0, 0] = 1 - image[0, 0, 0]  # still a valid image: only the checksum tells
    np.save(path, image)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    message = problems(root)
    assert f"{path}: sha256 {digest}, but {root / 'SHA256SUMS'} lists" in message
    assert "the file changed after the checksums were made" in message
    assert quick_check(root, FOLDERS)  # hashing is the deep check's job


def test_a_sample_linked_outside_fails_its_checksum_too(root, tmp_path):
    write_checksums(root)
    path = root / "val" / "image" / "0.npy"
    outside = tmp_path / "other.npy"
    np.save(outside, np.zeros((32, 64, 3), np.float32))
    path.unlink()
    path.symlink_to(outside)
    message = problems(root)
    assert f"{path}: resolves to {outside}, outside the data root" in message
    assert f"{path}: sha256 " in message


def test_files_missing_from_or_added_to_the_checksums(root):
    write_checksums(root)
    for sub in FOLDERS:  # the last sample gone: the layout alone cannot tell
        os.remove(root / "train" / sub / "3.npy")
    message = problems(root)
    assert f"{root / 'train' / 'image' / '3.npy'}: listed in {root / 'SHA256SUMS'} but cannot be read" in message
    write_checksums(root)
    write_sample(root, "train", 3)
    assert (f"{root / 'train' / 'depth' / '3.npy'}: not listed in {root / 'SHA256SUMS'}, which must list every "
            "data file") in problems(root)


def test_checksums_of_folders_left_out_are_not_read(root):
    write_checksums(root)
    path = root / "train" / "label_19" / "0.npy"
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    assert check_dataset(root, classes=(7,))["splits"] == COUNTS
    assert f"{path}: sha256 " in problems(root)


@pytest.mark.parametrize("line, expected", [
    ("made by hand", "expected '<sha256>  <path>' as sha256sum writes"),
    ("0" * 64 + "  ../outside.npy", "expected a path inside the data root"),
    ("0" * 64 + "  /etc/passwd", "expected a path inside the data root"),
])
def test_malformed_checksum_lines_are_named(root, line, expected):
    write_checksums(root)
    with open(root / "SHA256SUMS", "a") as f:
        f.write(line + "\n")
    assert f"{root / 'SHA256SUMS'} line {len(FOLDERS) * sum(COUNTS.values()) + 1}: " in problems(root)
    assert expected in problems(root)


# --- data changed under a run -----------------------------------------------------------------


def test_describe_changes_names_each_file_and_counts_the_rest():
    recorded = {f"train/image/{i}.npy": [100, 10**18] for i in range(8)}
    current = {**recorded, "train/image/0.npy": [120, 10**18], "train/image/1.npy": [100, 2 * 10**18],
               "val/depth/0.npy": [4, 5]}
    del current["train/image/2.npy"]
    assert describe_changes("R", recorded, recorded) is None
    moment = datetime.fromtimestamp(2e9)
    assert describe_changes("R", recorded, current) == (
        f"R/train/image/0.npy (100 bytes, now 120), R/train/image/1.npy (rewritten at {moment:%Y-%m-%d %H:%M:%S}), "
        "R/train/image/2.npy (gone), R/val/depth/0.npy (added)")
    for i in range(3, 8):
        current[f"train/image/{i}.npy"] = [1, 1]
    assert describe_changes("R", recorded, current).endswith("R/train/image/4.npy (100 bytes, now 1) and 4 more")


@pytest.fixture
def run_on_own_data(tiny_synthcity, tmp_path, seeded_and_restored):
    """A finished one-epoch run on a copy of the tiny release, made unfinished again: (run, data)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_synthcity, data)
    argv = ["--data-path", str(data), "--epochs", "1", "--batch-size", "4", "--width-mult", "0.0625",
            "--num-workers", "0", "--device", "cpu", "--out", str(tmp_path), "--name", "run"]
    assert main_cityscapes.main(argv) == 0
    run = tmp_path / "run"
    (run / "summary.json").unlink()
    return run, data


def rewrite_in_place(path):
    """Other values of the same shape, and a later modification time."""
    array = np.load(path)
    np.save(path, np.flip(array, axis=0).copy())
    status = os.stat(path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))


def test_a_run_records_its_data_files(run_on_own_data):
    run, data = run_on_own_data
    recorded = json.loads((run / "data_files.json").read_text())
    path = data / "train" / "image" / "3.npy"
    assert recorded["train/image/3.npy"] == [path.stat().st_size, path.stat().st_mtime_ns]
    # the tasks' folders only (semantic with 7 classes and depth), every sample of both splits
    assert {rel.rsplit("/", 1)[0] for rel in recorded} == {
        f"{split}/{folder}" for split in ("train", "val") for folder in ("image", "label_7", "depth")}
    assert len(recorded) == 3 * (16 + 8)


def test_a_resume_on_data_changed_in_place_is_refused(run_on_own_data, capsys):
    run, data = run_on_own_data
    changed = data / "val" / "depth" / "2.npy"
    rewrite_in_place(changed)
    capsys.readouterr()
    assert main_cityscapes.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {run}: the data changed under the run: {changed} (rewritten at " in err
    assert "data_files.json records each data file's size and modification time" in err
    for i in range(6):
        rewrite_in_place(data / "train" / "label_7" / f"{i}.npy")
    assert main_cityscapes.main(["--resume", str(run)]) == 2
    assert " and 2 more; " in capsys.readouterr().err


def test_a_resume_on_unchanged_data_or_without_a_record_continues(run_on_own_data):
    run, data = run_on_own_data
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 0
    (run / "summary.json").unlink()
    (run / "data_files.json").unlink()  # a run from before the record: nothing to compare
    rewrite_in_place(data / "train" / "image" / "0.npy")
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "3"]) == 0


def test_a_folder_left_with_only_its_data_record_takes_a_new_run(tiny_synthcity, tmp_path, seeded_and_restored):
    """A run stopped between data_files.json and config.json left nothing to resume: the same
    command starts it again rather than refusing the folder as an unfinished run."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data_files.json").write_text("{}")
    argv = ["--data-path", str(tiny_synthcity), "--epochs", "1", "--batch-size", "4", "--width-mult", "0.0625",
            "--num-workers", "0", "--device", "cpu", "--out", str(tmp_path), "--name", "run"]
    assert main_cityscapes.main(argv) == 0
    assert json.loads((tmp_path / "run" / "data_files.json").read_text())
