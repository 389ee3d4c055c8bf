"""data.prepare_cityscapes on a tiny raw tree in the official Cityscapes format."""
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import prepare_cityscapes
from data.check import DatasetError, check_dataset
from data.prepare_cityscapes import (
    PrepareError,
    SampleError,
    convert_sample,
    list_samples,
    parse_size,
    prepare,
)

REPO = Path(__file__).resolve().parents[1]
SRC = (64, 128)   # raw image size; outputs (32, 64) and (64, 128) make nearest sampling exact
OUT = (32, 64)

# Hand-written from the official table: label id -> (category 0..6, train id), void -1.
# 0 unlabeled and 1 ego vehicle are void in both; 9 parking is category flat but trainId 255.
EXPECTED_IDS = {0: (-1, -1), 1: (-1, -1), 9: (0, -1), 7: (0, 0), 26: (6, 13), 24: (5, 11), 23: (4, 10)}
DISPARITIES = np.array([0, 1, 12345, 32767, 65535], np.uint16)

# (split, city, "<seq>_<frame>") in creation order, deliberately not sorted.
RAW_SAMPLES = [
    ("train", "bochum", "000000_000100"),
    ("train", "bochum", "000000_000019"),
    ("train", "aachen", "000000_000042"),
    ("val", "frankfurt", "000000_000294"),
]
SORTED_TRAIN = ["aachen_000000_000042", "bochum_000000_000019", "bochum_000000_000100"]


def blocks(small, factor):
    """Each pixel of `small` becomes a factor x factor block: any resampling back is exact."""
    return np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)


def make_raw(root, size=OUT, samples=RAW_SAMPLES):
    """Write the raw tree of `samples`; return {stem: (rgb uint8, label ids, disparity)} at `size`, the output grid."""
    rng = np.random.default_rng(0)
    factor = SRC[0] // size[0]
    truth = {}
    for split, city, frame in samples:
        stem = f"{city}_{frame}"
        if split == "val":  # pure red, to pin the channel order
            rgb = np.zeros((*size, 3), np.uint8)
            rgb[..., 0] = 255
        else:
            rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        ids = rng.choice(list(EXPECTED_IDS), size).astype(np.uint8)
        disparity = rng.choice(DISPARITIES, size)
        truth[stem] = (rgb, ids, disparity)
        for package, suffix, array in (("leftImg8bit", "leftImg8bit", rgb[..., ::-1]),
                                       ("gtFine", "gtFine_labelIds", ids),
                                       ("disparity", "disparity", disparity)):
            folder = root / package / split / city
            folder.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(folder / f"{stem}_{suffix}.png"), blocks(array, factor))
    return truth


@pytest.fixture
def raw(tmp_path):
    make_raw(tmp_path / "raw")
    return tmp_path / "raw"


def expected_outputs(rgb, ids, disparity):
    label_7 = np.vectorize(lambda i: EXPECTED_IDS[i][0])(ids).astype(np.float32)
    label_19 = np.vectorize(lambda i: EXPECTED_IDS[i][1])(ids).astype(np.float32)
    return {"image": rgb.astype(np.float32) / 255, "label_7": label_7, "label_19": label_19,
            "depth": (disparity / 65535).astype(np.float32)[..., None]}


def snapshot(folder):
    return {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_sha256sum_passes(out):
    if not shutil.which("sha256sum"):
        pytest.skip("no sha256sum on this machine")
    for sums in ("SHA256SUMS", "COMPLETE"):
        check = subprocess.run(["sha256sum", "-c", "--quiet", sums], check=False, cwd=out, capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "data.prepare_cityscapes", *map(str, args)],
                          check=False, cwd=REPO, capture_output=True, text=True)


def tree(folder):
    """{relative path: bytes} of every file, hidden ones included."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_sample_labels_depth_and_rgb():
    rng = np.random.default_rng(1)
    ids = rng.choice(list(EXPECTED_IDS), OUT).astype(np.uint8)
    ids[0, :len(EXPECTED_IDS)] = list(EXPECTED_IDS)  # every id occurs
    disparity = rng.choice(DISPARITIES, OUT)
    red_bgr = np.zeros((*SRC, 3), np.uint8)
    red_bgr[..., 2] = 255
    got = convert_sample(red_bgr, blocks(ids, 2), blocks(disparity, 2), OUT)

    assert got["image"].shape == (*OUT, 3) and got["depth"].shape == (*OUT, 1)
    assert all(a.dtype == np.float32 for a in got.values())
    assert (got["image"][..., 0] == 1).all() and (got["image"][..., 1:] == 0).all()
    want = expected_outputs(np.zeros((*OUT, 3), np.uint8), ids, disparity)
    np.testing.assert_array_equal(got["label_7"], want["label_7"])
    np.testing.assert_array_equal(got["label_19"], want["label_19"])
    np.testing.assert_array_equal(got["depth"], want["depth"])
    assert (got["depth"][disparity == 0] == 0).all() and got["depth"].max() == 1


def test_convert_sample_rejects_bad_inputs():
    image = np.zeros((*SRC, 3), np.uint8)
    ids = np.full(SRC, 7, np.uint8)
    disparity = np.zeros(SRC, np.uint16)
    bad_ids = ids.copy()
    bad_ids[5, 5] = 34  # one pixel that resizing would skip still rejects the file
    with pytest.raises(SampleError, match=r"\[34\]") as e:
        convert_sample(image, bad_ids, disparity, OUT)
    assert e.value.role == "label"
    with pytest.raises(SampleError) as e:
        convert_sample(image, ids, disparity.astype(np.uint8), OUT)
    assert e.value.role == "disparity"
    with pytest.raises(SampleError) as e:
        convert_sample(image, ids[:-2], disparity, OUT)
    assert e.value.role == "label"


def test_parse_size():
    assert parse_size("128x256") == (128, 256) and parse_size("256X512") == (256, 512)
    for bad in ("100x200", "128", "axb", "0x32", "128x256x3", "-32x64"):
        with pytest.raises(ValueError, match="--size"):
            parse_size(bad)


def test_list_samples_sorted_by_city_then_name(raw):
    samples = list_samples(raw, ["train"])["train"]
    assert [Path(s.image).name for s in samples] == [f"{stem}_leftImg8bit.png" for stem in SORTED_TRAIN]
    assert samples[0] == ("aachen", "leftImg8bit/train/aachen/aachen_000000_000042_leftImg8bit.png",
                          "gtFine/train/aachen/aachen_000000_000042_gtFine_labelIds.png",
                          "disparity/train/aachen/aachen_000000_000042_disparity.png")


def test_build_outputs_index_and_checksums(tmp_path):
    truth = make_raw(tmp_path / "raw")
    out = tmp_path / "out"
    report = prepare(tmp_path / "raw", out, size=OUT, workers=2)
    assert report["samples"] == {"train": 3, "val": 1}

    order = {"train": SORTED_TRAIN, "val": ["frankfurt_000000_000294"]}
    for split, stems in order.items():
        assert len(list((out / split / "image").glob("*.npy"))) == len(stems)
        for i, stem in enumerate(stems):
            for kind, want in expected_outputs(*truth[stem]).items():
                got = np.load(out / split / kind / f"{i}.npy")
                assert got.dtype == np.float32
                np.testing.assert_array_equal(got, want, err_msg=f"{split}/{kind}/{i}.npy")
    red = np.load(out / "val" / "image" / "0.npy")
    assert (red[..., 0] == 1).all() and (red[..., 1:] == 0).all()

    rows = list(csv.reader((out / "index.csv").open()))
    assert rows[0] == ["split", "index", "city", "image", "label", "disparity"]
    assert rows[1] == ["train", "0", "aachen", "leftImg8bit/train/aachen/aachen_000000_000042_leftImg8bit.png",
                       "gtFine/train/aachen/aachen_000000_000042_gtFine_labelIds.png",
                       "disparity/train/aachen/aachen_000000_000042_disparity.png"]
    assert [(r[0], r[1], r[2]) for r in rows[2:]] == [
        ("train", "1", "bochum"), ("train", "2", "bochum"), ("val", "0", "frankfurt")]
    assert rows[3][3].endswith("bochum_000000_000100_leftImg8bit.png")

    settings = json.loads((out / "prepare.json").read_text())
    assert settings["size"] == list(OUT) and settings["counts"] == {"train": 3, "val": 1}
    listed = [line.split("  ")[1] for line in (out / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                                    and p.name not in ("SHA256SUMS", "COMPLETE"))
    sums_digest = hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest()
    assert (out / "COMPLETE").read_text() == f"{sums_digest}  SHA256SUMS\n"
    assert_sha256sum_passes(out)
    assert check_dataset(out)["splits"] == {"train": 3, "val": 1}


def test_rerun_keeps_restores_repairs_and_verifies(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=OUT)
    before = snapshot(out)
    assert prepare(raw, out, size=OUT)["written"] == []
    assert snapshot(out) == before  # a rerun over a complete build touches nothing
    prepare(raw, out, size=OUT, verify=True)

    (out / "train" / "depth" / "1.npy").unlink()
    (out / "train" / "label_7" / ".2.npy.tmp").write_bytes(b"left by a killed run")
    damaged = np.load(out / "val" / "image" / "0.npy")
    damaged[0, 0, 0] = 0.5
    np.save(out / "val" / "image" / "0.npy", damaged)
    with pytest.raises(PrepareError) as e:
        prepare(raw, out, size=OUT, verify=True)
    assert "train/depth/1.npy (missing)" in str(e.value) and "val/image/0.npy (differs)" in str(e.value)

    assert sorted(prepare(raw, out, size=OUT)["written"]) == ["train/depth/1.npy", "val/image/0.npy"]
    assert not list(out.rglob("*.tmp"))
    after = snapshot(out)
    changed = {p.relative_to(out).as_posix() for p in after if after[p] != before.get(p)}
    assert changed == {"train/depth/1.npy", "val/image/0.npy", "COMPLETE"}  # the marker: removed, then rewritten
    prepare(raw, out, size=OUT, verify=True)
    assert_sha256sum_passes(out)


def test_rerun_refuses_another_build(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=OUT)
    with pytest.raises(PrepareError, match="--size 32x64"):
        prepare(raw, out, size=(64, 128))
    with pytest.raises(PrepareError, match="--splits train val"):
        prepare(raw, out, size=OUT, splits=["train"])
    # A new raw image shifts the numbering: refused, not mixed.
    for package, suffix in (("leftImg8bit", "leftImg8bit"), ("gtFine", "gtFine_labelIds"), ("disparity", "disparity")):
        src = next((raw / package / "train" / "aachen").glob("*.png"))
        shutil.copy(src, src.parent / f"aachen_000000_000001_{suffix}.png")
    before = snapshot(out)
    with pytest.raises(PrepareError, match="index.csv does not match"):
        prepare(raw, out, size=OUT)
    assert snapshot(out) == before
    # A folder holding some other dataset is not written into.
    foreign = tmp_path / "foreign"
    (foreign / "train" / "image").mkdir(parents=True)
    with pytest.raises(PrepareError, match="no index.csv"):
        prepare(raw, foreign, size=OUT)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: shutil.rmtree(raw / "gtFine"), r"raw/gtFine is missing"),
    (lambda raw: shutil.rmtree(raw / "disparity" / "val"), r"raw/disparity/val is missing"),
    (lambda raw: (raw / "gtFine/train/bochum/bochum_000000_000019_gtFine_labelIds.png").unlink(),
     r"bochum_000000_000019_gtFine_labelIds.png: missing \(the sample is in leftImg8bit and disparity\)"),
    (lambda raw: (raw / "disparity/val/frankfurt/frankfurt_000000_000294_disparity.png").write_bytes(b"junk"),
     r"cannot read \S*raw/disparity/val/frankfurt/frankfurt_000000_000294_disparity.png"),
])
def test_incomplete_raw_is_a_clear_error(raw, tmp_path, damage, message):
    damage(raw)
    with pytest.raises(PrepareError, match=message):
        prepare(raw, tmp_path / "out", size=OUT)


def test_cli(raw, tmp_path):
    # The raw images are 64x128: the default 128x256 upsamples, which is fine for the CLI path.
    done = run_cli("--raw", raw, "--out", tmp_path / "out", "--workers", 1)
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "out" / "train" / "image" / "0.npy").shape == (128, 256, 3)
    assert "%|" in done.stderr  # the tqdm bar

    done = run_cli("--raw", raw, "--out", tmp_path / "big", "--size", "256x512", "--splits", "val")
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "big" / "val" / "depth" / "0.npy").shape == (256, 512, 1)
    assert not (tmp_path / "big" / "train").exists()
    done = run_cli("--raw", raw, "--out", tmp_path / "big", "--size", "256x512", "--splits", "val", "--verify")
    assert done.returncode == 0, done.stderr

    done = run_cli("--raw", raw, "--out", tmp_path / "bad", "--size", "100x200")
    assert done.returncode == 2 and "multiples of 32" in done.stderr and not (tmp_path / "bad").exists()

    shutil.rmtree(raw / "gtFine" / "train")
    done = run_cli("--raw", raw, "--out", tmp_path / "out2")
    assert done.returncode == 1 and "gtFine/train is missing" in done.stderr and "Traceback" not in done.stderr


def test_unfinished_build_is_refused_until_rerun(raw, tmp_path):
    # Enough val samples that a run killed in val leaves a smaller, consistent-looking release.
    samples = [*RAW_SAMPLES, *(("val", "frankfurt", f"000001_{k:06d}") for k in range(4))]
    make_raw(raw, samples=samples)
    out = tmp_path / "out"
    prepare(raw, out, size=OUT)
    clean = tree(out)
    # The state of a run killed while writing val: no SHA256SUMS, no COMPLETE, val cut short.
    for name in ("COMPLETE", "SHA256SUMS", *(f"val/{kind}/4.npy" for kind in ("image", "label_7", "label_19", "depth"))):
        (out / name).unlink()
    with pytest.raises(DatasetError) as error:
        check_dataset(out)
    message = str(error.value)
    assert f"{out / 'COMPLETE'} is missing: the build in {out} is unfinished" in message
    assert f"python3 -m data.prepare_cityscapes --raw RAW --out {out} --size 32x64 --splits train val" in message
    with pytest.raises(DatasetError, match="unfinished"):
        check_dataset(out, deep=False)

    assert sorted(prepare(raw, out, size=OUT)["written"]) == [f"val/{kind}/4.npy" for kind in
                                                               ("depth", "image", "label_19", "label_7")]
    assert tree(out) == clean
    assert check_dataset(out)["splits"] == {"train": 3, "val": 5}


def test_rerun_without_checksums_repairs_tampered_files(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=OUT)
    clean = tree(out)
    tampered = out / "train" / "label_7" / "1.npy"
    label = np.load(tampered)
    label[:4] = 0  # still valid values and the right shape: only the raw data can tell
    np.save(tampered, label)
    (out / "SHA256SUMS").unlink()
    assert prepare(raw, out, size=OUT)["written"] == ["train/label_7/1.npy"]
    assert tree(out) == clean
    prepare(raw, out, size=OUT, verify=True)


def test_raw_mismatches_are_all_listed(raw, tmp_path):
    shutil.rmtree(raw / "leftImg8bit" / "train" / "bochum")  # a whole city of two samples
    (raw / "disparity" / "train" / "aachen" / "aachen_000000_000042_disparity.png").unlink()
    orphans = raw / "gtFine" / "val" / "lindau"
    orphans.mkdir()
    for k in range(25):  # more than are listed
        (orphans / f"lindau_000000_{k:06d}_gtFine_labelIds.png").write_bytes(b"")
    with pytest.raises(PrepareError) as error:
        prepare(raw, tmp_path / "out", size=OUT)
    message = str(error.value)
    assert "(4 mismatch(es))" in message and "nothing was built" in message
    assert (f"{raw}/leftImg8bit/train/bochum: missing or without *_leftImg8bit.png files "
            "(gtFine has 2, disparity has 2 of city bochum's samples)") in message
    assert (f"{raw}/disparity/train/aachen/aachen_000000_000042_disparity.png: missing "
            "(the sample is in leftImg8bit and gtFine)") in message
    assert f"{raw}/leftImg8bit/val/lindau: missing or without" in message
    assert f"{raw}/disparity/val/lindau: missing or without" in message
    assert not (tmp_path / "out").exists()

    shutil.rmtree(orphans)
    for k in range(24):  # orphans in a city with samples: listed file by file, up to 20
        (raw / "gtFine" / "val" / "frankfurt" / f"frankfurt_000009_{k:06d}_gtFine_labelIds.png").write_bytes(b"")
    with pytest.raises(PrepareError) as error:
        prepare(raw, tmp_path / "out", size=OUT)
    message = str(error.value)
    assert "(50 mismatch(es))" in message and "... and 30 more" in message  # 2 above, 2 per orphan
    assert f"{raw}/leftImg8bit/val/frankfurt/frankfurt_000009_000000_leftImg8bit.png: missing" in message


def test_unreadable_city_folder_is_an_error(raw, tmp_path, monkeypatch):
    unreadable = raw / "leftImg8bit" / "train" / "bochum"
    scandir = os.scandir

    def refusing_scandir(path):
        if Path(path) == unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(prepare_cityscapes.os, "scandir", refusing_scandir)  # chmod does not stop root
    with pytest.raises(PrepareError, match=f"cannot list {unreadable}: Permission denied"):
        prepare(raw, tmp_path / "out", size=OUT)


def test_kill_9_at_random_moments_never_leaves_a_release_that_passes(tmp_path):
    """SIGKILL the builder mid-run again and again: after each kill the folder is refused
    (or, where the run had finished, equals a clean build); a last rerun equals a clean build."""
    cities = (("train", "aachen"), ("train", "bochum"), ("val", "frankfurt"))
    samples = [(*cities[k % 3], f"000000_{k:06d}") for k in range(120)]
    raw, out, clean_out = tmp_path / "raw", tmp_path / "out", tmp_path / "clean"
    make_raw(raw, samples=samples)
    start = time.perf_counter()
    prepare(raw, clean_out, size=OUT, workers=2)
    build_seconds = time.perf_counter() - start
    clean = tree(clean_out)

    rng = random.Random(0)
    command = ["--raw", raw, "--out", out, "--size", "32x64", "--workers", 2]
    npy_at_refused_kills = []
    for _ in range(30):
        if (out / "COMPLETE").exists():
            shutil.rmtree(out)  # start again: kill builds, not reruns that have nothing to do
        builder = subprocess.Popen([sys.executable, "-m", "data.prepare_cityscapes", *map(str, command)], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while builder.poll() is None and not (out / "index.csv").exists():  # the build phase has begun
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 1.5 * build_seconds))
        if builder.poll() is None:
            os.killpg(builder.pid, signal.SIGKILL)  # its own session: only the builder
        returncode = builder.wait()
        if (out / "COMPLETE").exists():  # it finished, or was killed after its last step
            check_dataset(out)
            assert tree(out) == clean
        else:
            assert returncode == -signal.SIGKILL
            with pytest.raises(DatasetError):
                check_dataset(out)
            npy_at_refused_kills.append(len(list(out.rglob("*.npy"))))
        if len(npy_at_refused_kills) == 6:
            break
    assert len(npy_at_refused_kills) == 6
    assert any(0 < n < len(samples) * 4 for n in npy_at_refused_kills), npy_at_refused_kills  # some mid-data

    done = run_cli(*command)
    assert done.returncode == 0, done.stderr
    assert (out / "SHA256SUMS").read_bytes() == (clean_out / "SHA256SUMS").read_bytes()
    assert tree(out) == clean
