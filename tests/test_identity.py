"""data.identity on SynthCity output, a built release and a plain .npy release."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from test_check import COUNTS, write_sample
from test_prepare_cityscapes import OUT, make_raw

from data import synthcity
from data.identity import data_identity
from data.prepare_cityscapes import prepare

SYNTH = {"n_train": 1, "n_val": 1, "height": 32, "width": 64}


def test_synthcity_is_identified_by_its_parameters(tmp_path):
    a = synthcity.generate(tmp_path / "a", seed=0, progress=False, **SYNTH)
    same = synthcity.generate(tmp_path / "same", seed=0, progress=False, **SYNTH)
    other_seed = synthcity.generate(tmp_path / "other", seed=1, progress=False, **SYNTH)
    identity = data_identity(a)
    assert identity == {"kind": "synthcity", "generator": synthcity.read_metadata(a)}
    assert identity["generator"]["seed"] == 0 and identity["generator"]["version"] == synthcity.GENERATOR_VERSION
    assert data_identity(same) == identity
    assert data_identity(other_seed) != identity
    assert json.loads(json.dumps(identity)) == identity


@pytest.fixture
def plain(tmp_path):
    """A release of bare .npy files (like the MTAN one)."""
    for split, n in COUNTS.items():
        for i in range(n):
            write_sample(tmp_path / "plain", split, i)
    return tmp_path / "plain"


def test_plain_release_is_identified_by_names_and_sizes(plain, tmp_path):
    identity = data_identity(plain)
    assert identity["kind"] == "file-list" and len(identity["sha256"]) == 64
    assert data_identity(shutil.copytree(plain, tmp_path / "copy")) == identity  # relative paths only
    path = plain / "val" / "depth" / "1.npy"
    np.save(path, np.zeros((32, 64, 1), np.float32))  # same size: contents are not read
    assert data_identity(plain) == identity
    np.save(path, np.zeros((64, 64, 1), np.float32))
    assert data_identity(plain) != identity


def test_built_release_is_identified_by_its_checksums(tmp_path):
    make_raw(tmp_path / "raw")
    out = tmp_path / "out"
    prepare(tmp_path / "raw", out, size=OUT)
    sums = (out / "SHA256SUMS").read_bytes()
    assert data_identity(out) == {"kind": "sha256sums", "sha256": hashlib.sha256(sums).hexdigest()}


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data_identity(tmp_path / "nowhere")
