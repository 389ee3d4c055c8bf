import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from data.check import DatasetError, check_dataset, completion_marker, format_summary, load_valid, main, quick_check
from data.instances import instance_target

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTS = {"train": 4, "val": 2}
FOLDERS = ("image", "label_7", "label_19", "depth")


def write_sample(root, split, i, height=32, width=64, instance=False):
    rng = np.random.default_rng(i)
    arrays = {
        "image": rng.random((height, width, 3), dtype=np.float32),
        "label_7": rng.integers(-1, 7, (height, width)).astype(np.float32),
        "label_19": rng.integers(-1, 19, (height, width)).astype(np.float32),
        "depth": rng.uniform(0, 0.5, (height, width, 1)).astype(np.float32),
    }
    if instance:
        arrays["instance"] = instance_target(rng.choice([0, 26001, 26002, 24001], (height, width)))
    for sub, array in arrays.items():
        os.makedirs(root / split / sub, exist_ok=True)
        np.save(root / split / sub / f"{i}.npy", array)


@pytest.fixture
def root(tmp_path):
    for split, n in COUNTS.items():
        for i in range(n):
            write_sample(tmp_path, split, i)
    return tmp_path


def problems(root, **kwargs):
    with pytest.raises(DatasetError) as error:
        check_dataset(root, **kwargs)
    return str(error.value)


def test_valid_dataset_passes(root):
    summary = check_dataset(root)
    assert summary["splits"] == COUNTS
    assert summary["image_size"] == (32, 64)
    assert quick_check(root, ("image", "label_19", "depth"))["splits"] == COUNTS


def test_missing_split(root):
    shutil.rmtree(root / "val")
    assert f"{root / 'val'}: missing split folder" in problems(root)


def test_missing_subfolder(root):
    shutil.rmtree(root / "train" / "depth")
    assert f"{root / 'train' / 'depth'}: missing folder" in problems(root)


def test_mismatched_counts(root):
    os.remove(root / "train" / "depth" / "3.npy")
    message = problems(root)
    assert "file counts differ" in message and "depth 3" in message
    assert f"{root / 'train' / 'depth' / '3.npy'}: missing file" in message


def test_gap_in_indices(root):
    for sub in ("image", "label_7", "label_19", "depth"):
        os.remove(root / "train" / sub / "1.npy")
    message = problems(root)
    assert f"{root / 'train' / 'image' / '1.npy'}: missing file" in message
    assert "file counts differ" not in message


def test_stray_file(root):
    (root / "train" / "image" / "notes.txt").write_text("hi")
    np.save(root / "train" / "image" / "01.npy", np.zeros((32, 64, 3), np.float32))
    message = problems(root)
    assert f"{root / 'train' / 'image' / 'notes.txt'}: stray" in message
    assert f"{root / 'train' / 'image' / '01.npy'}: stray" in message


def test_empty_folder(root):
    for i in range(COUNTS["val"]):
        os.remove(root / "val" / "label_19" / f"{i}.npy")
    message = problems(root)
    assert f"{root / 'val' / 'label_19'}: empty folder" in message
    assert "missing file" not in message


def test_wrong_shape(root):
    path = root / "train" / "image" / "2.npy"
    np.save(path, np.zeros((32, 64, 4), np.float32))
    assert f"{path}: shape (32, 64, 4), expected (H, W, 3)" in problems(root)


def test_wrong_dtype(root):
    path = root / "val" / "label_7" / "1.npy"
    np.save(path, np.zeros((32, 64), np.float64))
    assert f"{path}: dtype float64, expected float32" in problems(root)


def test_empty_array(root):
    path = root / "train" / "image" / "1.npy"
    np.save(path, np.zeros((0, 64, 3), np.float32))
    assert f"{path}: empty array of shape (0, 64, 3)" in problems(root)


def test_size_differs_from_the_rest(root):
    path = root / "train" / "depth" / "0.npy"
    np.save(path, np.zeros((64, 64, 1), np.float32))
    assert f"{path}: size 64x64, expected 32x64" in problems(root)


def test_size_not_multiple_of_32(tmp_path):
    for split, n in COUNTS.items():
        for i in range(n):
            write_sample(tmp_path, split, i, height=40)
    assert "size 40x64: height and width must be positive multiples of 32" in problems(tmp_path)


def test_label_out_of_range_names_value_and_count(root):
    path = root / "train" / "label_7" / "3.npy"
    label = np.load(path)
    label[:2, :5] = 7
    np.save(path, label)
    message = problems(root)
    assert f"{path}: label values 7 (10 pixels)" in message
    assert check_dataset(root, classes=(19,))  # the 19-class set is untouched


def test_nan_in_image(root):
    path = root / "val" / "image" / "0.npy"
    image = np.load(path)
    image[3, 4, 1] = np.nan
    np.save(path, image)
    assert f"{path}: 1 NaN or infinite values" in problems(root)
    assert quick_check(root, FOLDERS)  # values are the deep check's job


def test_image_out_of_range(root):
    path = root / "train" / "image" / "1.npy"
    np.save(path, np.load(path) * 255)
    assert f"{path}:" in problems(root) and "outside [0, 1]" in problems(root)


def test_negative_depth(root):
    path = root / "train" / "depth" / "2.npy"
    depth = np.load(path)
    depth[0, 0] = -0.25
    np.save(path, depth)
    assert f"{path}: 1 negative values (min -0.25)" in problems(root)


def test_truncated_file_fails_even_the_quick_check(root):
    path = root / "train" / "label_7" / "0.npy"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="truncated") as error:
        quick_check(root, ("image", "label_7"))
    assert str(path) in str(error.value)


def test_corrupt_header(root):
    path = root / "val" / "depth" / "1.npy"
    path.write_bytes(b"not a numpy file at all")
    assert f"{path}: not a readable .npy file" in problems(root)


def test_many_problems_are_counted(root):
    for i in range(COUNTS["train"]):
        for sub in ("image", "label_7", "label_19", "depth"):
            (root / "train" / sub / f"{i}.npy").write_bytes(b"")
    message = problems(root)
    assert "16 problems" in message and "... and" not in message
    for i in range(10):
        (root / "train" / "image" / f"x{i}").write_text("")
    assert "26 problems" in problems(root) and "... and 6 more" in problems(root)


def test_stray_huge_index_is_one_range_in_bounded_memory(root):
    for sub in ("image", "label_7", "label_19", "depth"):
        shutil.copy(root / "train" / sub / "0.npy", root / "train" / sub / "10000000.npy")
    start = time.perf_counter()
    message = problems(root)
    assert time.perf_counter() - start < 5  # was 40 s and 2.9 GB before a MemoryError
    assert (f"{root / 'train' / 'image'}: missing files 4..9999999.npy (9999996 files; "
            "indices must run 0..10000000 in every subfolder)") in message
    assert "4 problems" in message  # one range per subfolder, not one line per index


def test_gaps_are_single_files_or_ranges(root):
    for i in (5, 6, 9):  # train holds 0..3: 4 and 7..8 are missing
        write_sample(root, "train", i)
    message = problems(root)
    assert f"{root / 'train' / 'depth' / '4.npy'}: missing file (indices must run 0..9 in every subfolder)" in message
    assert f"{root / 'train' / 'depth'}: missing files 7..8.npy (2 files; indices must run 0..9" in message
    assert "8 problems" in message


def write_checksums(root):
    """SHA256SUMS of every file under root, as `cd root && sha256sum */*/*.npy prepare.json` writes it."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in ("SHA256SUMS", "COMPLETE"))
    (root / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n"
                                             for p in files))


def builders_folder(root):
    """Make the valid fixture look like data.prepare_cityscapes' output, before its last step."""
    (root / "prepare.json").write_text(json.dumps({"size": [32, 64], "splits": ["train", "val"]}))
    write_checksums(root)


def test_unfinished_build_is_refused(root):
    builders_folder(root)
    for deep in (True, False):
        message = problems(root, deep=deep)
        assert message.startswith(f"{root / 'COMPLETE'} is missing: the build in {root} is unfinished")
        assert f"python3 -m data.prepare_cityscapes --raw RAW --out {root} --size 32x64 --splits train val" in message
    with pytest.raises(DatasetError, match="unfinished"):
        quick_check(root, FOLDERS)
    (root / "COMPLETE").write_bytes(completion_marker((root / "SHA256SUMS").read_bytes()))
    assert check_dataset(root)["splits"] == COUNTS


def test_finished_build_whose_checksums_changed_is_refused(root):
    builders_folder(root)
    (root / "COMPLETE").write_bytes(completion_marker((root / "SHA256SUMS").read_bytes()))
    (root / "SHA256SUMS").write_bytes(b"1" * 64 + b"  index.csv\n")
    assert f"{root / 'SHA256SUMS'} does not match {root / 'COMPLETE'}" in problems(root)
    (root / "SHA256SUMS").unlink()
    assert f"{root / 'SHA256SUMS'}: cannot read the finished build's SHA256SUMS" in problems(root)


def test_folders_without_prepare_json_are_not_the_builders(root):
    write_checksums(root)  # made by hand beside the MTAN release: no COMPLETE needed
    assert check_dataset(root)["splits"] == COUNTS


def test_cli_refuses_an_unfinished_build(root, capsys):
    builders_folder(root)
    assert main(["--data-path", str(root)]) == 1
    assert "unfinished" in capsys.readouterr().err


def test_missing_root(tmp_path):
    assert f"{tmp_path / 'nowhere'}: data folder not found" in problems(tmp_path / "nowhere")


def test_cli_success(root, capsys):
    assert main(["--data-path", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train 4, val 2" in out and "32x64" in out and "deep check OK" in out
    assert main(["--data-path", str(root), "--quick", "--classes", "19"]) == 0
    assert "label_19, quick check OK" in capsys.readouterr().out


def test_cli_classes_restricts_the_check(root, capsys):
    shutil.rmtree(root / "train" / "label_19")
    assert main(["--data-path", str(root), "--classes", "7"]) == 0
    assert main(["--data-path", str(root)]) == 1
    assert "label_19: missing folder" in capsys.readouterr().err


def test_cli_failure_exits_1_without_traceback(root):
    path = root / "train" / "depth" / "1.npy"
    path.write_bytes(path.read_bytes()[:50])
    for data_path, named in ((root, path), (root / "nowhere", root / "nowhere")):
        result = subprocess.run([sys.executable, "-m", "data.check", "--data-path", str(data_path)],
                                check=False, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 1
        assert str(named) in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


# --- instance/ ---------------------------------------------------------------------------


@pytest.fixture
def with_instance(root):
    for split, n in COUNTS.items():
        for i in range(n):
            write_sample(root, split, i, instance=True)
    return root


def test_instance_is_checked_when_present(with_instance, capsys):
    summary = check_dataset(with_instance)
    assert summary["folders"] == (*FOLDERS, "instance")
    assert "label_7+label_19+instance" in format_summary(summary)
    assert main(["--data-path", str(with_instance)]) == 0
    assert "instance, deep check OK" in capsys.readouterr().out
    assert quick_check(with_instance, ("image", "label_7", "instance"))["classes"] == (7,)


def test_without_instance_the_default_check_does_not_ask_for_it(root):
    assert check_dataset(root)["folders"] == FOLDERS
    assert format_summary(check_dataset(root)).endswith(", label_7+label_19, deep check OK")


def test_instance_in_one_split_only_is_missing_in_the_other(with_instance):
    shutil.rmtree(with_instance / "val" / "instance")
    assert f"{with_instance / 'val' / 'instance'}: missing: the instance task reads" in problems(with_instance)


@pytest.mark.parametrize("shape, dtype, message", [
    ((32, 64, 2), np.float32, "shape (32, 64, 2), expected (H, W, 3)"),
    ((32, 64), np.float32, "shape (32, 64), expected (H, W, 3)"),
    ((32, 64, 3), np.float64, "dtype float64, expected float32"),
])
def test_instance_header(with_instance, shape, dtype, message):
    path = with_instance / "train" / "instance" / "1.npy"
    np.save(path, np.zeros(shape, dtype))
    assert f"{path}: {message}" in problems(with_instance, deep=False)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.__setitem__((0, 0, 0), np.nan), "1 NaN or infinite values"),
    (lambda t: t.__setitem__((0, 0, 1), np.inf), "1 NaN or infinite values"),
    (lambda t: t.__setitem__((slice(0, 2), 0, 2), 0.5), "channel 2 (the instance mask) holds 0.5 at 2 pixels"),
    (lambda t: t.__setitem__((3, 3), (0.0, 1.5, 0.0)), "1 background pixels (channel 2 = 0) with non-zero offsets"),
])
def test_instance_values(with_instance, damage, message):
    path = with_instance / "val" / "instance" / "0.npy"
    target = np.load(path)
    damage(target)
    np.save(path, target)
    assert f"{path}: {message}" in problems(with_instance)
    with pytest.raises(DatasetError, match="expected finite offsets") as error:
        load_valid(path, "instance")  # as the dataset loads each sample
    assert str(path) in str(error.value)
    assert quick_check(with_instance, (*FOLDERS, "instance"))  # values are the deep check's job


def test_load_valid_instance(with_instance):
    path = with_instance / "train" / "instance" / "2.npy"
    np.testing.assert_array_equal(load_valid(path, "instance"), np.load(path))
    empty = np.zeros((32, 64, 3), np.float32)  # no instance at all is valid
    np.save(path, empty)
    assert not load_valid(path, "instance").any()


def test_missing_instance_in_the_mtan_release_says_why_and_what_to_do(root):
    with pytest.raises(DatasetError) as error:
        quick_check(root, ("image", "label_7", "instance", "depth"))
    message = str(error.value)
    assert "(1 problem)" in message  # once for both splits
    assert f"{root / '{train,val}' / 'instance'}: missing: the instance task reads instance/<i>.npy" in message
    assert "the MTAN .npy release has no instance labels" in message
    assert "--tasks semantic instance depth" in message and "python3 -m data.prepare_cityscapes" in message
    assert "gtFine *_instanceIds.png" in message and "SynthCity" in message


def test_missing_instance_in_a_build_says_how_to_upgrade(root):
    builders_folder(root)
    (root / "COMPLETE").write_bytes(completion_marker((root / "SHA256SUMS").read_bytes()))
    with pytest.raises(DatasetError) as error:
        quick_check(root, ("image", "instance"))
    message = str(error.value)
    assert "this build of data.prepare_cityscapes has no instance targets" in message
    assert f"python3 -m data.prepare_cityscapes --raw RAW --out {root} --size 32x64 --splits train val" in message


def test_missing_instance_in_old_synthcity_says_regenerate(root):
    (root / "synthcity.json").write_text(json.dumps({"generator": "synthcity", "version": 1}))
    with pytest.raises(DatasetError, match="SynthCity data comes from a generator version without instance"):
        quick_check(root, ("image", "instance"))
