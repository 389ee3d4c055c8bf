"""SynthCity: format, determinism, class statistics, geometry, instances, the cache and the CLI."""
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data import synthcity as sc
from data.check import DatasetError, check_dataset
from data.instances import instance_target
from data.labels import TRAIN_ID_NAMES, TRAIN_ID_TO_CATEGORY, VOID
from data.layout import INSTANCE_DIR, SPLITS, SUBDIRS, SYNTHETIC_MARKER
from runfolder import atomic

REPO = Path(__file__).resolve().parent.parent
H, W = 64, 128  # small and fast; the generator's geometry does not depend on the size
N_STATS = 300   # "all 19 classes occur in a few hundred samples"
SMALL = dict(n_train=3, n_val=2, height=H, width=W, seed=0)
NAME = {name: i for i, name in enumerate(TRAIN_ID_NAMES)}
THINGS = [NAME[n] for n in ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")]


@pytest.fixture(scope="module")
def samples():
    return [sc.render_sample(0, "val", i, H, W) for i in range(N_STATS)]


@pytest.fixture(scope="module")
def class_counts(samples):
    """Pixels per train id (index 19: void) over all samples, and in how many samples each occurs."""
    pixels, occurs = np.zeros(20, np.int64), np.zeros(19, np.int64)
    for s in samples:
        counts = np.bincount(s["label_19"].astype(np.int64).ravel() % 20, minlength=20)  # -1 -> 19
        pixels += counts
        occurs += counts[:19] > 0
    return pixels, occurs


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


# --- format ----------------------------------------------------------------------------


def test_sample_format(samples):
    mapping = np.array(list(TRAIN_ID_TO_CATEGORY) + [VOID], np.float32)  # index -1 -> VOID
    for s in samples[:40]:
        assert set(s) == {"image", "label_19", "label_7", "depth", "instance"}
        assert all(a.dtype == np.float32 for a in s.values())
        image, l19, l7, depth = s["image"], s["label_19"], s["label_7"], s["depth"]
        assert image.shape == (H, W, 3) and depth.shape == (H, W, 1)
        assert l19.shape == l7.shape == (H, W)
        assert 0 <= image.min() and image.max() <= 1
        assert set(np.unique(l19)) <= set(range(-1, 19))
        assert set(np.unique(l7)) <= set(range(-1, 7))
        np.testing.assert_array_equal(l7, mapping[l19.astype(np.int64)])
        d = depth[..., 0]
        assert np.isfinite(d).all() and d.min() >= 0 and d.max() < 0.6
        assert (d[l19 == VOID] == 0).all()
        assert (d[l19 == NAME["sky"]] == 0).all()
        assert (l19[-1] == VOID).all()  # the ego vehicle's band along the bottom
        assert 0.5 < np.mean(d > 0) < 1  # mostly valid, some invalid
        instance = s["instance"]
        assert instance.shape == (H, W, 3) and np.isfinite(instance).all()
        np.testing.assert_array_equal(instance[..., 2], np.isin(l19, THINGS))  # every visible thing pixel
        assert not instance[instance[..., 2] == 0].any()


def test_image_is_not_a_colour_code(samples):
    """The same class takes many colours: per-class colour spread is wide in every image set."""
    image = np.stack([s["image"] for s in samples[:40]])
    label = np.stack([s["label_19"] for s in samples[:40]])
    for name in ("road", "building", "car"):
        pixels = image[label == NAME[name]]
        assert pixels.std(0).mean() > 0.05, name


# --- determinism -----------------------------------------------------------------------


def test_samples_are_a_pure_function_of_their_arguments():
    a = sc.render_sample(3, "train", 7, H, W)
    b = sc.render_sample(3, "train", 7, H, W)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes()
    for other in (sc.render_sample(3, "train", 8, H, W), sc.render_sample(4, "train", 7, H, W),
                  sc.render_sample(3, "val", 7, H, W)):
        assert not np.array_equal(a["image"], other["image"])
        assert not np.array_equal(a["label_19"], other["label_19"])


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split"):
        sc.render_sample(0, "test", 0, H, W)


def test_two_generations_are_byte_identical(tmp_path):
    a = sc.generate(tmp_path / "a", progress=False, **SMALL)
    b = sc.generate(tmp_path / "b", progress=False, **SMALL)
    assert files(a) == files(b)


# --- writing data sets -----------------------------------------------------------------


def test_generate_writes_the_release_layout_and_metadata(tmp_path):
    out = sc.generate(tmp_path / "synth", progress=False, **SMALL)
    assert out == tmp_path / "synth"
    for split, n in zip(SPLITS, (SMALL["n_train"], SMALL["n_val"])):
        for sub in (*SUBDIRS, INSTANCE_DIR):
            assert sorted(os.listdir(out / split / sub)) == [f"{i}.npy" for i in range(n)]
    metadata = json.loads((out / SYNTHETIC_MARKER).read_text())
    digest = hashlib.sha256(b"".join((out / split / sub / f"{i}.npy").read_bytes()
                                     for split, n in zip(SPLITS, (SMALL["n_train"], SMALL["n_val"]))
                                     for sub in (*SUBDIRS, INSTANCE_DIR) for i in range(n))).hexdigest()
    assert metadata == {"generator": "synthcity", "version": sc.GENERATOR_VERSION, **SMALL, "sha256": digest}
    assert sc.read_metadata(out) == metadata
    assert sc.read_metadata(tmp_path) is None
    # The files are the samples, and the whole set passes the dataset's own deep check.
    np.testing.assert_array_equal(np.load(out / "val" / "depth" / "1.npy"),
                                  sc.render_sample(0, "val", 1, H, W)["depth"])
    np.testing.assert_array_equal(np.load(out / "train" / "instance" / "2.npy"),
                                  sc.render_sample(0, "train", 2, H, W)["instance"])
    assert check_dataset(out, deep=True)["folders"][-1] == INSTANCE_DIR


def test_a_folder_without_instance_is_not_this_version(tmp_path):
    out = sc.generate(tmp_path / "synth", progress=False, **SMALL)
    for split in SPLITS:
        for path in (out / split / INSTANCE_DIR).iterdir():
            path.unlink()
    with pytest.raises(FileExistsError, match="an incomplete copy of this data set"):
        sc.generate(out, progress=False, **SMALL)


def test_existing_folder_with_other_content_is_refused(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="taken"):
        sc.generate(out, progress=False, **SMALL)
    assert (out / "notes.txt").read_text() == "mine"
    # Other parameters than the data set there hold: also refused, not overwritten.
    done = sc.generate(tmp_path / "done", progress=False, **SMALL)
    with pytest.raises(FileExistsError, match="done"):
        sc.generate(done, progress=False, **{**SMALL, "seed": 1})
    # An empty folder is fine.
    (tmp_path / "empty").mkdir()
    assert sc.read_metadata(sc.generate(tmp_path / "empty", progress=False, **SMALL)) is not None


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    real, calls = sc.render_sample, []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sc, "render_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sc.generate(tmp_path / "synth", progress=False, **SMALL)
    # neither the target nor the partial sibling; only the (empty) lock that serialises generators
    assert [p.name for p in tmp_path.iterdir()] == [".synth.lock"]
    monkeypatch.setattr(sc, "render_sample", real)
    assert sc.read_metadata(sc.generate(tmp_path / "synth", progress=False, **SMALL))["n_train"] == 3


def test_a_ctrl_c_before_atomic_folder_can_clean_up_leaves_no_partial_folder(tmp_path, monkeypatch):
    # The window CI hit: the temporary folder exists, atomic_folder's `try` not yet entered.
    made = atomic._temporary_neighbour

    def made_then_interrupted(path, make):
        made(path, make)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_temporary_neighbour", made_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        sc.generate(tmp_path / "synth", progress=False, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == [".synth.lock"]


def test_a_killed_generations_partial_folder_is_removed_by_the_next_one(tmp_path):
    (tmp_path / ".synth.0123abcd.tmp" / "train").mkdir(parents=True)  # kill -9 mid-generation
    (tmp_path / ".synth-b.0123abcd.tmp").mkdir()  # another data set's: not this one's to remove
    sc.generate(tmp_path / "synth", progress=False, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".synth-b.0123abcd.tmp", ".synth.lock", "synth"]


@pytest.mark.parametrize("bad", [dict(height=100), dict(width=0), dict(n_train=0), dict(n_val=-1)])
def test_bad_arguments_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        sc.generate(tmp_path / "x", progress=False, **{**SMALL, **bad})
    assert not (tmp_path / "x").exists()


def test_cache_is_reused_and_keyed_by_parameters(tmp_path, monkeypatch):
    first = sc.cached(tmp_path, progress=False, **SMALL)
    assert first == tmp_path / f"v{sc.GENERATOR_VERSION}-{H}x{W}-train3-val2-seed0"
    mtimes = {p: p.stat().st_mtime_ns for p in first.rglob("*")}

    def no_rendering(*args):
        raise AssertionError("the cache was regenerated")

    monkeypatch.setattr(sc, "render_sample", no_rendering)
    assert sc.cached(tmp_path, progress=False, **SMALL) == first
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == mtimes
    monkeypatch.undo()
    other = sc.cached(tmp_path, progress=False, **{**SMALL, "seed": 1})
    assert other != first and sc.read_metadata(other)["seed"] == 1
    assert sc.cached(tmp_path, progress=False, **{**SMALL, "n_val": 1}) not in (first, other)


def test_concurrent_requests_for_one_cache_generate_it_once(tmp_path):
    # The demo's two runs, or a sweep's --jobs, ask for the same SynthCity at the same moment.
    code = ("import sys; from data import synthcity as sc; "
            f"print(sc.cached(sys.argv[1], progress=False, n_train=12, n_val=4, height={H}, width={W}))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    roots = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(roots) == 1
    check_dataset(Path(roots.pop()), deep=True)
    assert not list(tmp_path.glob(atomic.TEMPORARIES))  # no partial folder left


# --- class statistics ------------------------------------------------------------------


def test_all_19_classes_occur(class_counts):
    pixels, occurs = class_counts
    missing = [TRAIN_ID_NAMES[c] for c in range(19) if occurs[c] == 0]
    assert not missing
    assert pixels[19] > 0  # and void


def test_class_frequencies_are_cityscapes_like(class_counts):
    pixels, occurs = class_counts
    share = pixels[:19] / pixels.sum()
    top = np.argsort(share)[::-1]
    assert {TRAIN_ID_NAMES[c] for c in top[:2]} == {"road", "building"}
    for common in ("vegetation", "car", "sky", "sidewalk"):
        assert share[NAME[common]] > 0.015, common
    assert share[NAME["person"]] < 0.02 and share[NAME["person"]] < share[NAME["car"]] / 4
    for rare in ("train", "bus", "truck", "motorcycle"):  # rare ones rarely: in a few samples only
        assert occurs[NAME[rare]] < N_STATS / 5 and share[NAME[rare]] < 0.01, rare


# --- geometry --------------------------------------------------------------------------


def test_ground_depth_is_linear_in_the_row_below_the_horizon(samples):
    ground = [NAME["road"], NAME["sidewalk"], NAME["terrain"]]
    for s in samples[:30]:
        label, depth = s["label_19"], s["depth"][..., 0]
        on_ground = np.isin(label, ground) & (depth > 0)
        rows, values = [], []
        for r in range(H):
            v = depth[r][on_ground[r]]
            if len(v):
                assert np.ptp(v) < 1e-6  # the same inverse depth along a row
                rows.append(r)
                values.append(v[0])
        rows, values = np.array(rows), np.array(values)
        assert (np.diff(values) > 0).all()  # nearer toward the bottom
        slope, intercept = np.polyfit(rows, values, 1)
        np.testing.assert_allclose(values, slope * rows + intercept, atol=1e-5)
        horizon = -intercept / slope + 0.5  # zero inverse depth at the horizon (row r spans [r, r + 1))
        assert 0.3 * H < horizon < 0.52 * H
        # Road pixels within a column grow in inverse depth toward the bottom.
        road = (label == NAME["road"]) & (depth > 0)
        pairs = road[:-1] & road[1:]
        assert (depth[1:][pairs] > depth[:-1][pairs]).all()


def test_an_upright_object_is_sized_and_placed_by_its_depth():
    cam = sc.Camera(focal=sc.FOCAL_PER_WIDTH * 256, cx=128.0, horizon=56.0, height=sc.CAMERA_HEIGHT)
    boxes = {}
    for z in (8.0, 16.0):
        canvas = sc.Canvas(128, 256)
        sc._car(np.random.default_rng(0), 0.0, z, oncoming=False).draw(canvas, cam)
        car = canvas.label == sc.CAR
        assert (canvas.inv[car] == np.float32(sc.DEPTH_SCALE / z)).all()  # constant: the footprint's
        rows, cols = np.nonzero(car)
        boxes[z] = (rows.max() + 1, rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
        assert abs(boxes[z][0] - cam.row(0.0, z)) <= 1  # the foot row follows from z
    (_, h8, w8), (_, h16, w16) = boxes[8.0], boxes[16.0]
    assert abs(h8 / h16 - 2) < 0.15 and abs(w8 / w16 - 2) < 0.15  # size proportional to 1/z


def test_vehicles_have_constant_depth_down_their_columns(samples):
    vehicles = [NAME[n] for n in ("car", "truck", "bus", "train", "motorcycle", "bicycle")]
    same = total = 0
    for s in samples[:60]:
        label, depth = s["label_19"], s["depth"][..., 0]
        mask = np.isin(label, vehicles) & (depth > 0)
        pairs = mask[:-1] & mask[1:]
        same += np.count_nonzero(depth[:-1][pairs] == depth[1:][pairs])
        total += np.count_nonzero(pairs)
    assert total > 1000 and same / total > 0.97  # the rest: one vehicle occluding another


# --- command line ----------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "data.synthcity", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_writes_the_layout(tmp_path):
    out = tmp_path / "cli"
    result = run_cli("--out", str(out), "--n-train", "2", "--n-val", "1", "--height", "64", "--width", "128",
                     "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    assert sc.read_metadata(out) == {"generator": "synthcity", "version": sc.GENERATOR_VERSION,
                                     "n_train": 2, "n_val": 1, "height": 64, "width": 128, "seed": 5,
                                     "sha256": sc.content_digest(out, 2, 1)}
    assert np.load(out / "train" / "image" / "1.npy").shape == (64, 128, 3)


# SIGINT unblocked and at Python's handler, as a shell's foreground command has it: a child
# inherits a blocked SIGINT across exec, which a test earlier in the same pytest process can
# leave behind; in CI's order the child then never saw the Ctrl-C and generated for over a
# minute (reproduced by blocking SIGINT before pytest starts).
AS_FROM_A_TERMINAL = ("import runpy, signal; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                      "signal.signal(signal.SIGINT, signal.default_int_handler); "
                      "runpy.run_module('data.synthcity', run_name='__main__')")


def test_cli_stopped_by_ctrl_c_exits_130_and_leaves_no_folder(tmp_path):
    out = tmp_path / "big"
    process = subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, "--out", str(out), "--n-train", "5000"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("generating SynthCity")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "stopped by SIGINT" in stderr and "Traceback" not in stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("args, message", [
    (["--height", "100"], "multiples of 32"),
    (["--width", "-64"], "positive"),
    (["--n-train", "zero"], "positive integer"),
])
def test_cli_rejects_bad_arguments(tmp_path, args, message):
    result = run_cli("--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


# --- the stored arrays: versions 1 to 3, on any CPU ----------------------------------------

# The sha256 over the .npy files of each subfolder (train 0..2, then val 0..1, file bytes
# concatenated) of sc.generate(DIR, **SMALL). label_7, label_19 and depth: made by the code at
# b677ecf (GENERATOR_VERSION 1, before instance/), run from an export of that commit with this
# venv; versions 2 and 3 must not change them. instance: version 2's (7c6cb2f), unchanged in 3.
# image: version 3's, which no longer depends on the CPU (the test below), so valid anywhere.
DIGESTS = {
    "image": "78f89863dbbc7c6858fb5b642762538745e8dd3dd0cf27a9591af35c09bbebf2",
    "label_7": "62ef2819078cdd3ade19bdcc3c09fd9703ad691cf59ac925d8ebc22dcac2e121",
    "label_19": "5767e2fc64e917e49a8992a6e10fc2c1e13b2b287e9d325c32b30131b2cfed7f",
    "depth": "7cfac656e82ef42cfe3cd876917e2bfa7830bd2ff9c0ce2ef9765cd4afaa26dd",
    "instance": "389c66473daa7a3be7f472b7c656b216e30149cc2a7ce9b266fe38aa5fdc9067",
}
# Turns off the optional instruction sets of OpenCV and NumPy (by their names in the versions of
# requirements.txt), leaving the SSE paths that every x86-64 CPU runs. NumPy refuses a name it
# does not dispatch with an ImportWarning, which the test makes an error: a renamed set fails
# the test instead of leaving it comparing a CPU path with itself.
NO_OPTIONAL_INSTRUCTIONS = {"OPENCV_CPU_DISABLE": "AVX512_SKX,AVX2,FMA3,AVX",
                            "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}
# Writes SynthCity (SMALL) to argv[1] and prints the sha256 of its float64 images before their
# 8-bit rounding, which would hide most differences in the last bits.
GENERATE_AND_HASH_UNROUNDED = f"""
import hashlib, sys
from data import synthcity as sc
unrounded, eight_bit = hashlib.sha256(), sc._eight_bit
def recorded(rgb):
    unrounded.update(rgb.tobytes())
    return eight_bit(rgb)
sc._eight_bit = recorded
sc.generate(sys.argv[1], progress=False, **{SMALL})
print(unrounded.hexdigest())
"""


def test_arrays_are_those_of_version_3_with_the_labels_and_depth_of_version_1(tmp_path):
    assert sc.GENERATOR_VERSION == 3 and sc.cache_name(3, 2, H, W, 0).startswith("v3-")  # old caches regenerate
    out = sc.generate(tmp_path / "synth", progress=False, **SMALL)
    for sub, digest in DIGESTS.items():
        h = hashlib.sha256()
        for split, n in (("train", SMALL["n_train"]), ("val", SMALL["n_val"])):
            for i in range(n):
                h.update((out / split / sub / f"{i}.npy").read_bytes())
        assert h.hexdigest() == digest, sub


def test_a_cpu_without_simd_extensions_writes_the_same_bytes(tmp_path):
    """OpenCV and NumPy run other code (AVX-512, AVX2 or SSE) by the CPU; the data must not
    depend on which: a process as is and one without the optional sets write the same files,
    from the same unrounded images."""
    unrounded = {}
    for name, env in (("as-is", {}), ("sse", NO_OPTIONAL_INSTRUCTIONS)):
        result = subprocess.run([sys.executable, "-W", "error::ImportWarning", "-c", GENERATE_AND_HASH_UNROUNDED,
                                 str(tmp_path / name)], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        unrounded[name] = result.stdout
    assert unrounded["sse"] == unrounded["as-is"]
    assert files(tmp_path / "sse") == files(tmp_path / "as-is")


def test_the_image_is_in_8_bit_steps(samples):
    """As a camera image, and the CityScapes release (k / 255 in float32), are."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    for s in samples[:10]:
        assert np.isin(s["image"], levels).all()


def test_instances_are_the_visible_pixels_of_each_placed_object():
    cam = sc.Camera(focal=sc.FOCAL_PER_WIDTH * 256, cx=128.0, horizon=56.0, height=sc.CAMERA_HEIGHT)
    rng = np.random.default_rng(0)
    # Far to near: a car partly behind the cyclist, a person partly behind the second car, that
    # car, and the cyclist.
    things = [sc._car(rng, 1.0, 20.0, oncoming=False), sc._person(rng, -1.2, 12.0),
              sc._car(rng, -1.8, 10.0, oncoming=True), sc._cyclist(rng, 0.5, 6.0, motor=False)]
    canvas = sc.Canvas(128, 256)
    for k, thing in enumerate(things):
        thing.draw(canvas, cam, object_id=1000 + 2 * k)
    ids = canvas.instance_ids()

    def alone(thing):
        one = sc.Canvas(128, 256)
        one.label[:] = sc.VOID_CODE  # any label written by the object
        thing.draw(one, cam)
        return one.label

    drawn = [alone(t) for t in things]
    for k, label in enumerate(drawn):
        hidden = np.zeros(label.shape, bool)
        for nearer in drawn[k + 1:]:
            hidden |= nearer != sc.VOID_CODE
        own = label != sc.VOID_CODE
        assert (own & hidden).any() or k not in (0, 1)  # the far car and the person are partly occluded
        assert (own & ~hidden).any()  # and partly visible
        if k < 3:
            np.testing.assert_array_equal(ids == 1000 + 2 * k, own & ~hidden)
    # The cyclist: its bicycle and its rider are two instances, as in Cityscapes.
    np.testing.assert_array_equal(ids == 1006, canvas.label == sc.BICYCLE)
    np.testing.assert_array_equal(ids == 1007, canvas.label == sc.RIDER)
    assert set(np.unique(ids)) == {0, 1000, 1002, 1004, 1006, 1007}
    target = instance_target(ids)
    rows, cols = np.nonzero(ids == 1002)  # the person's centroid: that of its visible pixels
    np.testing.assert_allclose(target[rows, cols, 0] + rows, rows.mean(), atol=1e-4)
    np.testing.assert_allclose(target[rows, cols, 1] + cols, cols.mean(), atol=1e-4)


def test_void_specks_and_the_bonnet_remove_instance_pixels(samples):
    counts = []
    for s in samples[:60]:
        on = s["instance"][..., 2] == 1
        assert not on[-1].any()  # the ego vehicle's band
        assert not on[s["label_19"] == VOID].any()
        offsets = s["instance"][..., :2][on]
        counts.append(on.sum())
        assert len(offsets) == 0 or np.abs(offsets).max() < max(H, W)
    assert np.mean(np.array(counts) > 0) > 0.8  # most scenes have objects


def test_a_cache_whose_bytes_changed_is_generated_again_and_a_given_folder_refused(tmp_path, capsys):
    """The identity records what was generated (its SHA-256): changed bytes are never taken for it."""
    root = sc.cached(tmp_path, progress=False, **SMALL)
    original = (root / "val" / "image" / "0.npy").read_bytes()
    digest = sc.read_metadata(root)["sha256"]
    array = np.load(root / "val" / "image" / "0.npy")
    np.save(root / "val" / "image" / "0.npy", np.clip(array + 1 / 255, 0, 1).astype(np.float32))
    with pytest.raises(FileExistsError, match="one whose bytes changed since"):
        sc.generate(root, progress=False, **SMALL)  # a folder the user names is not replaced
    with pytest.raises(DatasetError, match="the data changed after it was generated"):
        check_dataset(root)  # the deep check compares the bytes with the record
    assert sc.cached(tmp_path, progress=False, **SMALL) == root
    assert "its bytes differ from the SHA-256" in capsys.readouterr().err
    assert (root / "val" / "image" / "0.npy").read_bytes() == original and sc.read_metadata(root)["sha256"] == digest
