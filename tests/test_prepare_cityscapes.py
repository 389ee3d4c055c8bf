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
from data.check import DatasetError, check_dataset, quick_check
from data.instances import instance_target
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


def make_raw(root, size=OUT, samples=RAW_SAMPLES, instances=True):
    """Write the raw tree of `samples`; return {stem: (rgb uint8, label ids, disparity, instance ids)} at
    `size`, the output grid. instances=False: no *_instanceIds.png (as a version 1 build's raw tree could be)."""
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
        # Persons (24) and cars (26) are instances, one per 16 columns; no random numbers drawn.
        columns = np.broadcast_to(np.arange(size[1]) // 16, size)
        instance_ids = np.where(np.isin(ids, (24, 26)), ids.astype(np.int64) * 1000 + 1 + columns, ids).astype(np.uint16)
        truth[stem] = (rgb, ids, disparity, instance_ids)
        files = [("leftImg8bit", "leftImg8bit", rgb[..., ::-1]), ("gtFine", "gtFine_labelIds", ids),
                 ("disparity", "disparity", disparity)]
        if instances:
            files.append(("gtFine", "gtFine_instanceIds", instance_ids))
        for package, suffix, array in files:
            folder = root / package / split / city
            folder.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(folder / f"{stem}_{suffix}.png"), blocks(array, factor))
    return truth


@pytest.fixture
def raw(tmp_path):
    make_raw(tmp_path / "raw")
    return tmp_path / "raw"


def expected_outputs(rgb, ids, disparity, instance_ids=None):
    label_7 = np.vectorize(lambda i: EXPECTED_IDS[i][0])(ids).astype(np.float32)
    label_19 = np.vectorize(lambda i: EXPECTED_IDS[i][1])(ids).astype(np.float32)
    want = {"image": rgb.astype(np.float32) / 255, "label_7": label_7, "label_19": label_19,
            "depth": (disparity / 65535).astype(np.float32)[..., None]}
    if instance_ids is not None:  # the function itself is tested in test_instances.py and below by hand
        want["instance"] = instance_target(instance_ids)
    return want


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
    assert parse_size("1024x2048") == (1024, 2048)
    with pytest.raises(ValueError, match=r"--size 32000x64000: larger than CityScapes' 1024x2048 frames, .* 68\.7 GiB"):
        parse_size("32000x64000")  # refused up front: it was killed for memory


def test_list_samples_sorted_by_city_then_name(raw):
    samples = list_samples(raw, ["train"])["train"]
    assert [Path(s.image).name for s in samples] == [f"{stem}_leftImg8bit.png" for stem in SORTED_TRAIN]
    assert samples[0] == ("aachen", "leftImg8bit/train/aachen/aachen_000000_000042_leftImg8bit.png",
                          "gtFine/train/aachen/aachen_000000_000042_gtFine_labelIds.png",
                          "disparity/train/aachen/aachen_000000_000042_disparity.png",
                          "gtFine/train/aachen/aachen_000000_000042_gtFine_instanceIds.png")


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
    assert rows[0] == ["split", "index", "city", "image", "label", "disparity", "instance"]
    assert rows[1] == ["train", "0", "aachen", "leftImg8bit/train/aachen/aachen_000000_000042_leftImg8bit.png",
                       "gtFine/train/aachen/aachen_000000_000042_gtFine_labelIds.png",
                       "disparity/train/aachen/aachen_000000_000042_disparity.png",
                       "gtFine/train/aachen/aachen_000000_000042_gtFine_instanceIds.png"]
    assert [(r[0], r[1], r[2]) for r in rows[2:]] == [
        ("train", "1", "bochum"), ("train", "2", "bochum"), ("val", "0", "frankfurt")]
    assert rows[3][3].endswith("bochum_000000_000100_leftImg8bit.png")

    settings = json.loads((out / "prepare.json").read_text())
    assert settings["size"] == list(OUT) and settings["counts"] == {"train": 3, "val": 1}
    assert settings["format_version"] == 2
    assert settings["folders"] == ["image", "label_7", "label_19", "depth", "instance"]
    listed = [line.split("  ")[1] for line in (out / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                                    and p.name not in ("SHA256SUMS", "COMPLETE"))
    sums_digest = hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest()
    assert (out / "COMPLETE").read_text() == f"{sums_digest}  SHA256SUMS\n"
    assert_sha256sum_passes(out)
    summary = check_dataset(out)
    assert summary["splits"] == {"train": 3, "val": 1} and "instance" in summary["folders"]


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
    for package, suffix in (("leftImg8bit", "leftImg8bit"), ("gtFine", "gtFine_labelIds"), ("disparity", "disparity"),
                            ("gtFine", "gtFine_instanceIds")):
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
     r"bochum_000000_000019_gtFine_labelIds.png: missing \(the sample is in leftImg8bit, disparity and gtFine instanceIds\)"),
    (lambda raw: (raw / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_instanceIds.png").unlink(),
     r"frankfurt_000000_000294_gtFine_instanceIds.png: missing \(the sample is in leftImg8bit, gtFine and disparity\)"),
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
    kinds = ("image", "label_7", "label_19", "depth", "instance")
    for name in ("COMPLETE", "SHA256SUMS", *(f"val/{kind}/4.npy" for kind in kinds)):
        (out / name).unlink()
    with pytest.raises(DatasetError) as error:
        check_dataset(out)
    message = str(error.value)
    assert f"{out / 'COMPLETE'} is missing: the build in {out} is unfinished" in message
    assert f"python3 -m data.prepare_cityscapes --raw RAW --out {out} --size 32x64 --splits train val" in message
    with pytest.raises(DatasetError, match="unfinished"):
        check_dataset(out, deep=False)

    assert sorted(prepare(raw, out, size=OUT)["written"]) == [f"val/{kind}/4.npy" for kind in sorted(kinds)]
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
        for suffix in ("labelIds", "instanceIds"):
            (orphans / f"lindau_000000_{k:06d}_gtFine_{suffix}.png").write_bytes(b"")
    with pytest.raises(PrepareError) as error:
        prepare(raw, tmp_path / "out", size=OUT)
    message = str(error.value)
    assert "(4 mismatch(es))" in message and "nothing was built" in message
    assert (f"{raw}/leftImg8bit/train/bochum: missing or without *_leftImg8bit.png files "
            "(gtFine has 2, disparity has 2, gtFine instanceIds has 2 of city bochum's samples)") in message
    assert (f"{raw}/disparity/train/aachen/aachen_000000_000042_disparity.png: missing "
            "(the sample is in leftImg8bit, gtFine and gtFine instanceIds)") in message
    assert f"{raw}/leftImg8bit/val/lindau: missing or without" in message
    assert f"{raw}/disparity/val/lindau: missing or without" in message
    assert not (tmp_path / "out").exists()

    shutil.rmtree(orphans)
    for k in range(24):  # orphans in a city with samples: listed file by file, up to 20
        for suffix in ("labelIds", "instanceIds"):
            (raw / "gtFine/val/frankfurt" / f"frankfurt_000009_{k:06d}_gtFine_{suffix}.png").write_bytes(b"")
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
    assert any(0 < n < len(samples) * 5 for n in npy_at_refused_kills), npy_at_refused_kills  # some mid-data

    done = run_cli(*command)
    assert done.returncode == 0, done.stderr
    assert (out / "SHA256SUMS").read_bytes() == (clean_out / "SHA256SUMS").read_bytes()
    assert tree(out) == clean


# --- instance/ (format version 2) -----------------------------------------------------

# The .npy files image/, label_7/, label_19/ and depth/ that the code at b677ecf (format
# version 1, before instance/) builds from make_raw(raw) with --size 32x64: the sha256 of the
# sorted lines "<split>/<kind>/<i>.npy <sha256 of the file>" joined by "\n" (npy_digest).
# Computed by writing make_raw's tree with this file and running
# `python -m data.prepare_cityscapes --raw RAW --out OUT --size 32x64` from an export of
# commit b677ecf (that code ignores the *_instanceIds.png files).
VERSION_1_NPY_DIGEST = "e8812ee8433e6542f250ad33abe38549eaff1632503beb455b8a08abc478df77"
VERSION_1_KINDS = ("image", "label_7", "label_19", "depth")


def npy_digest(out, kinds=VERSION_1_KINDS):
    lines = sorted(f"{p.relative_to(out).as_posix()} {hashlib.sha256(p.read_bytes()).hexdigest()}"
                   for kind in kinds for p in out.glob(f"*/{kind}/*.npy"))
    assert len(lines) == 4 * len(kinds)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def as_version_1(out):
    """Turn a build without instance/ into what the code at b677ecf wrote: its prepare.json
    (format_version 1, no "folders"), with SHA256SUMS and COMPLETE made again to match."""
    settings = json.loads((out / "prepare.json").read_text())
    settings["format_version"] = 1
    del settings["folders"]
    (out / "prepare.json").write_text(json.dumps(settings, indent=2) + "\n")
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}\n"
                   for p in sorted(out.rglob("*"), key=lambda p: p.relative_to(out).as_posix())
                   if p.is_file() and p.name not in ("SHA256SUMS", "COMPLETE"))
    (out / "SHA256SUMS").write_text(sums)
    digest = hashlib.sha256(sums.encode()).hexdigest()
    (out / "COMPLETE").write_text(f"{digest}  SHA256SUMS\n")


def test_image_label_and_depth_bytes_are_those_of_version_1(tmp_path):
    make_raw(tmp_path / "raw")
    prepare(tmp_path / "raw", tmp_path / "with", size=OUT)
    assert npy_digest(tmp_path / "with") == VERSION_1_NPY_DIGEST
    make_raw(tmp_path / "raw_v1", instances=False)
    prepare(tmp_path / "raw_v1", tmp_path / "without", size=OUT)
    assert npy_digest(tmp_path / "without") == VERSION_1_NPY_DIGEST


def test_rerun_upgrades_a_version_1_build_adding_instance(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_raw(raw, instances=False)
    report = prepare(raw, out, size=OUT)
    assert report["folders"] == VERSION_1_KINDS and not list(out.glob("*/instance"))
    index_v1 = (out / "index.csv").read_bytes()
    assert index_v1.startswith(b"split,index,city,image,label,disparity\n")
    as_version_1(out)
    assert_sha256sum_passes(out)
    assert npy_digest(out) == VERSION_1_NPY_DIGEST  # the data of a version 1 build
    with pytest.raises(DatasetError) as error:  # a run of the instance task on it
        quick_check(out, ("image", "instance", "depth"))
    assert "instance" in str(error.value) and f"--out {out} --size 32x64" in str(error.value)
    before = snapshot(out)

    truth = make_raw(raw)  # the gtFine package now holds *_instanceIds.png
    report = prepare(raw, out, size=OUT)
    assert sorted(report["written"]) == sorted(f"{split}/instance/{i}.npy" for split, n in (("train", 3), ("val", 1))
                                               for i in range(n))
    after = snapshot(out)
    untouched = {p for p in before if p.relative_to(out).parts[0] in ("train", "val")}
    assert {p: after[p] for p in untouched} == {p: before[p] for p in untouched}  # not even rewritten
    assert npy_digest(out) == VERSION_1_NPY_DIGEST
    index = (out / "index.csv").read_bytes()
    assert [line.rsplit(b",", 1)[0] for line in index.splitlines()] == index_v1.splitlines()  # + a column
    assert index.splitlines()[1].endswith(b",gtFine/train/aachen/aachen_000000_000042_gtFine_instanceIds.png")
    assert json.loads((out / "prepare.json").read_text())["format_version"] == 2
    listed = {line.split("  ")[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert {"train/instance/0.npy", "val/instance/0.npy", "index.csv", "prepare.json"} <= listed
    assert_sha256sum_passes(out)
    np.testing.assert_array_equal(np.load(out / "train" / "instance" / "0.npy"),
                                  expected_outputs(*truth["aachen_000000_000042"])["instance"])
    assert "instance" in check_dataset(out)["folders"]
    assert tree(out) == tree_of_fresh_build(raw, tmp_path / "fresh")  # the same as building anew
    prepare(raw, out, size=OUT, verify=True)
    assert prepare(raw, out, size=OUT)["written"] == []


def tree_of_fresh_build(raw, out):
    prepare(raw, out, size=OUT)
    return tree(out)


def test_a_build_with_instance_is_not_rerun_without_instance_ids(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=OUT)
    before = snapshot(out)
    for path in raw.glob("gtFine/*/*/*_instanceIds.png"):
        path.unlink()
    with pytest.raises(PrepareError, match="was built with instance/ from gtFine \\*_gtFine_instanceIds.png"):
        prepare(raw, out, size=OUT)
    assert snapshot(out) == before


def test_without_instance_ids_the_build_has_no_instance_folder(tmp_path):
    make_raw(tmp_path / "raw", instances=False)
    done = run_cli("--raw", tmp_path / "raw", "--out", tmp_path / "out", "--size", "32x64")
    assert done.returncode == 0, done.stderr
    assert "no instance/" in done.stdout and not list((tmp_path / "out").glob("*/instance"))
    assert json.loads((tmp_path / "out" / "prepare.json").read_text())["folders"] == list(VERSION_1_KINDS)
    assert "instance" not in check_dataset(tmp_path / "out")["folders"]


def instance_raw(root):
    """A raw tree of three hand-made samples at 64x128 (SRC) with known instances; returns
    {(split, index): the expected instance/ target at 32x64 (OUT)}, worked out by hand.

    cv2.INTER_NEAREST halving keeps the even raw rows and columns: raw (r, c) -> out (r/2, c/2).
    """
    road, car, person, rider = 7, 26, 24, 25
    expected = {}

    def write(split, city, frame, instance_ids):
        label_ids = np.where(instance_ids >= 1000, instance_ids // 1000, instance_ids).astype(np.uint8)
        rgb = np.full((*SRC, 3), 128, np.uint8)
        disparity = np.full(SRC, 1000, np.uint16)
        stem = f"{city}_{frame}"
        for package, suffix, array in (("leftImg8bit", "leftImg8bit", rgb), ("gtFine", "gtFine_labelIds", label_ids),
                                       ("gtFine", "gtFine_instanceIds", instance_ids),
                                       ("disparity", "disparity", disparity)):
            folder = root / package / split / city
            folder.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(folder / f"{stem}_{suffix}.png"), array)

    def target(instances):
        """instances: [(out rows, out cols, centroid (row, col))] -> the (32, 64, 3) target."""
        t = np.zeros((*OUT, 3), np.float32)
        for rows, cols, (cy, cx) in instances:
            for r, c in zip(rows, cols):
                t[r, c] = (np.float32(cy - r), np.float32(cx - c), 1)
        return t

    def block(r0, r1, c0, c1):
        rows, cols = np.mgrid[r0:r1 + 1, c0:c1 + 1]
        return list(rows.ravel()), list(cols.ravel())

    # train 0 (aachen): five instances, two of them cut by the resize, one dropped by it.
    ids = np.full(SRC, road, np.uint16)
    ids[0:2, 100:128] = car             # a car group: a thing class without an instance id
    ids[4:12, 8:24] = car * 1000 + 1    # A: raw 8x16 -> out rows 2..5, cols 4..11
    ids[21:25, 41:45] = person * 1000 + 1  # B: raw rows 21..24 -> out 11, 12 only; cols 41..44 -> 21, 22
    ids[40:60, 101] = person * 1000 + 2    # C: one odd column wide: no even column, gone at 32x64
    ids[40:48, 60:76] = car * 1000 + 2     # D1 and D2 touch: separate instances
    ids[40:48, 76:92] = car * 1000 + 3
    ids[50:58, 0:4] = rider * 1000 + 1     # E: an L; raw rows 56..57 -> out row 28
    ids[56:58, 4:16] = rider * 1000 + 1
    write("train", "aachen", "000000_000001", ids)
    a, b = block(2, 5, 4, 11), block(11, 12, 21, 22)
    d1, d2 = block(20, 23, 30, 37), block(20, 23, 38, 45)
    e = (block(25, 28, 0, 1)[0] + [28] * 6, block(25, 28, 0, 1)[1] + list(range(2, 8)))
    expected["train", 0] = target([
        (*a, (3.5, 7.5)),
        (*b, (11.5, 21.5)),  # of the 2x2 pixels kept, not 1/2 of the raw centroid (22.5, 42.5)
        (*d1, (21.5, 33.5)), (*d2, (21.5, 41.5)),
        (*e, ((2 * (25 + 26 + 27 + 28) + 6 * 28) / 14, (4 * (0 + 1) + sum(range(2, 8))) / 14)),
    ])
    # train 1 (bochum): no instances at all, only plain label ids.
    ids = np.full(SRC, road, np.uint16)
    ids[10:30, 10:50] = car
    write("train", "bochum", "000000_000002", ids)
    expected["train", 1] = np.zeros((*OUT, 3), np.float32)
    # val 0 (frankfurt): its only instance lies on odd raw rows and vanishes.
    ids = np.full(SRC, road, np.uint16)
    ids[7, 10:40] = car * 1000 + 1
    write("val", "frankfurt", "000000_000003", ids)
    expected["val", 0] = np.zeros((*OUT, 3), np.float32)
    return expected


def test_instance_targets_of_hand_made_instances(tmp_path):
    expected = instance_raw(tmp_path / "raw")
    prepare(tmp_path / "raw", tmp_path / "out", size=OUT)
    for (split, i), want in expected.items():
        got = np.load(tmp_path / "out" / split / "instance" / f"{i}.npy")
        assert got.dtype == np.float32 and got.shape == (*OUT, 3)
        np.testing.assert_array_equal(got, want, err_msg=f"{split}/instance/{i}.npy")
    e = expected["train", 0]
    assert e[28, 7, 2] == 1 and np.isclose(e[28, 7, 0], 380 / 14 - 28)  # the hand arithmetic, spelled out
    assert (e[:, 50, 2] == 0).all()  # C is gone
    assert check_dataset(tmp_path / "out")["folders"][-1] == "instance"


def test_instance_ids_of_every_sample_or_none(raw, tmp_path):
    (raw / "gtFine/train/bochum/bochum_000000_000019_gtFine_instanceIds.png").unlink()
    with pytest.raises(PrepareError) as error:
        prepare(raw, tmp_path / "out", size=OUT)
    message = str(error.value)
    assert "and its *_gtFine_instanceIds.png as gtFine holds some" in message
    assert (f"{raw}/gtFine/train/bochum/bochum_000000_000019_gtFine_instanceIds.png: missing "
            "(the sample is in leftImg8bit, gtFine and disparity)") in message
    assert not (tmp_path / "out").exists()


def test_convert_sample_rejects_bad_instance_ids():
    image, ids, disparity = np.zeros((*SRC, 3), np.uint8), np.full(SRC, 7, np.uint8), np.zeros(SRC, np.uint16)
    good = np.full(SRC, 26001, np.uint16)
    assert convert_sample(image, ids, disparity, OUT, good)["instance"].shape == (*OUT, 3)
    for bad, match in ((good[:-2], "shape"), (good.astype(np.int32), "16-bit"), (np.full(SRC, 500, np.uint16), "500"),
                       (np.full(SRC, 34001, np.uint16), "34001")):
        with pytest.raises(SampleError, match=match) as e:
            convert_sample(image, ids, disparity, OUT, bad)
        assert e.value.role == "instance"
