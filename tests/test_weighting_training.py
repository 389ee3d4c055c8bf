"""The methods added to match the field train end to end through main_cityscapes.py: 2 epochs
on tiny SynthCity under adam and adam_with_adatask, and every stateful one resumes exactly
from its checkpoint (docs/methods.md, "Weighting methods")."""
import json
import math

import pytest

import main_cityscapes
from optim.weighting import WEIGHTINGS

# main_cityscapes.main() run in this process seeds the global RNGs: given back after each test
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded_and_restored")]

# Options that make the state matter within 2 epochs: STCH's nadir is collected in epoch 1 and
# used in epoch 2, DWA's iteration window (2 x 1 steps) fills within the first epoch.
EARLY = {"stch": ["--stch-warmup-epochs", "0"], "dwa": ["--dwa-mode", "iteration", "--dwa-window", "1"]}
# The methods added to match the field (config.json schema 4).
METHODS_ADDED_IN_4 = ("imtl_l", "stch", "gls", "gradnorm", "graddrop", "gradvac", "db_mtl", "fairgrad", "moco",
                      "sdmgrad", "excess_mtl", "config", "dualproj")
STATEFUL = ["imtl_l", "stch", "gradnorm", "graddrop", "gradvac", "db_mtl", "moco", "sdmgrad", "excess_mtl", "dwa"]


def train(data, out, name, *extra, epochs=2):
    return main_cityscapes.main(["--data-path", str(data), "--epochs", str(epochs), "--batch-size", "4",
                                 "--width-mult", "0.125", "--num-workers", "0", "--device", "cpu", "--seed", "3",
                                 "--out", str(out), "--name", name, *extra])


def rows(run_dir):
    out = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in out:
        row.pop("seconds")
    return out


@pytest.mark.parametrize("method", ["adam", "adam_with_adatask"])
@pytest.mark.parametrize("weighting", METHODS_ADDED_IN_4)
def test_two_epochs_on_tiny_synthcity(tiny_synthcity, tmp_path, method, weighting):
    flags = [f"--method={method}", f"--weighting={weighting}", *EARLY.get(weighting, [])]
    assert train(tiny_synthcity, tmp_path, "run", *flags) == 0
    metrics = rows(tmp_path / "run")
    assert [row["epoch"] for row in metrics] == [0, 1]
    for row in metrics:
        for split in ("train", "test"):
            values = [v for k, v in row[split].items() if isinstance(v, float)]
            assert values and all(math.isfinite(v) for v in values), (split, row[split])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    recorded = config["weighting"]
    assert recorded["name"] == weighting and set(WEIGHTINGS[weighting].OPTIONS) <= set(recorded["options"])


@pytest.mark.parametrize("method", ["adam", "adam_with_adatask"])
def test_the_imtl_l_g_hybrid_two_epochs(tiny_synthcity, tmp_path, method):
    assert train(tiny_synthcity, tmp_path, "run", f"--method={method}", "--weighting=imtl_l",
                 "--imtl-l-hybrid", "true") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["weighting"]["options"] == {"trainer": "network", "lr": 1e-4, "weight_decay": 1e-5, "hybrid": True,
                                              "heads": "scaled", "head_grads": "own"}
    assert len(rows(tmp_path / "run")) == 2


@pytest.mark.parametrize("weighting", STATEFUL)
def test_a_resumed_run_equals_an_uninterrupted_one(tiny_synthcity, tmp_path, weighting):
    flags = ["--method=adam_with_adatask", f"--weighting={weighting}", *EARLY.get(weighting, [])]
    assert train(tiny_synthcity, tmp_path, "full", *flags) == 0
    assert train(tiny_synthcity, tmp_path, "split", *flags, epochs=1) == 0
    (tmp_path / "split" / "summary.json").unlink()  # as if stopped after its epoch-1 checkpoint
    assert main_cityscapes.main(["--resume", str(tmp_path / "split"), "--epochs", "2"]) == 0
    assert rows(tmp_path / "split") == rows(tmp_path / "full")
