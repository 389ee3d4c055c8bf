"""Checkpoints, --resume after SIGKILL, corrupt checkpoints, config mismatches, NaN handling."""
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from run_helpers import run_argv, start_run, tiny_release, wait_for

import main_cityscapes
from data.identity import data_identity
from tasks.depth import DepthTask

# main_cityscapes.main() run in this process seeds the global RNGs: given back after each test
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded_and_restored")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_release(tmp_path_factory, "resume", seed=2)


def argv(data, out, name, *extra, epochs=3):
    return run_argv(data, out, name, "--seed", "5", *extra, epochs=epochs)


def rows_without_wall_clock(run_dir):
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


@pytest.mark.parametrize("method, weighting", [("adam_with_adatask", "ew"), ("adam", "dwa")])
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(data, tmp_path, method, weighting):
    flags = [f"--method={method}", f"--weighting={weighting}"]
    assert main_cityscapes.main(argv(data, tmp_path, "full", *flags)) == 0

    cut = tmp_path / "cut"
    proc = start_run(argv(data, tmp_path, "cut", *flags), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(cut / "checkpoint.pt", proc, timeout=240)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "summary.json").exists(), "the run ended before it was killed"
    assert len(rows_without_wall_clock(cut)) < 3

    assert main_cityscapes.main(["--resume", str(cut), "--num-workers", "1"]) == 0
    assert rows_without_wall_clock(cut) == rows_without_wall_clock(tmp_path / "full")
    summary = lambda d: json.loads((d / "summary.json").read_text())["last10"]
    assert summary(cut) == summary(tmp_path / "full")


def test_corrupt_latest_checkpoint_resumes_from_the_previous_one(data, tmp_path, capsys):
    assert main_cityscapes.main(argv(data, tmp_path, "full", epochs=3)) == 0
    assert main_cityscapes.main(argv(data, tmp_path, "cut", epochs=2)) == 0
    cut = tmp_path / "cut"
    (cut / "summary.json").unlink()  # as if killed after the last checkpoint
    latest = cut / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    capsys.readouterr()
    assert main_cityscapes.main(["--resume", str(cut), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{latest} is corrupt or truncated" in out and "checkpoint.prev.pt" in out
    assert "resuming" in out and "at epoch 2" in out
    assert rows_without_wall_clock(cut) == rows_without_wall_clock(tmp_path / "full")


def test_checkpoint_holds_every_state_and_loads_with_weights_only(data, tmp_path):
    assert main_cityscapes.main(argv(data, tmp_path, "run", "--weighting=rlw", epochs=2)) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "weighting", "rng", "epoch", "step", "rows"} <= set(state)
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert state["epoch"] == 2 and len(state["rows"]) == 2
    previous = torch.load(tmp_path / "run" / "checkpoint.prev.pt", weights_only=True)
    assert previous["epoch"] == 1


def test_resume_refuses_a_setting_that_changes_results(data, tmp_path, capsys):
    assert main_cityscapes.main(argv(data, tmp_path, "run", epochs=1)) == 0
    (tmp_path / "run" / "summary.json").unlink()
    assert main_cityscapes.main(["--resume", str(tmp_path / "run"), "--lr", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "--lr" in err and "0.0001" in err and "change its results" in err


def test_resume_refuses_a_checkpoint_from_another_config(data, tmp_path, capsys):
    assert main_cityscapes.main(argv(data, tmp_path, "run", epochs=1)) == 0
    run = tmp_path / "run"
    (run / "summary.json").unlink()
    config = json.loads((run / "config.json").read_text())
    config["settings"]["seed"] = 6
    (run / "config.json").write_text(json.dumps(config))
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 2
    assert "seed" in capsys.readouterr().err


def test_resume_of_a_finished_run_without_more_epochs_is_refused(data, tmp_path, capsys):
    assert main_cityscapes.main(argv(data, tmp_path, "run", epochs=1)) == 0
    assert main_cityscapes.main(["--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "finished" in err and "--epochs N" in err


def test_non_finite_loss_stops_keeps_the_checkpoint_and_exits_non_zero(data, tmp_path, monkeypatch, capsys):
    """A NaN depth loss injected in the second epoch: the run stops with a message naming
    the task, keeps epoch 1's checkpoint and metrics, writes no summary, exits 3."""
    calls = {"n": 0}
    depth_loss_terms = DepthTask.loss_terms

    def poisoned(task, pred, target):
        calls["n"] += 1
        total, count = depth_loss_terms(task, pred, target)
        return (total * float("nan") if calls["n"] > 16 else total), count  # 12 train + 2 test batches per epoch

    monkeypatch.setattr(DepthTask, "loss_terms", poisoned)
    assert main_cityscapes.main(argv(data, tmp_path, "run", epochs=3)) == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "loss_depth is nan" in err and "Traceback" not in err
    run = tmp_path / "run"
    assert str(run / "checkpoint.pt") in err and not (run / "summary.json").exists()
    assert len(rows_without_wall_clock(run)) == 1
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_a_diverging_run_stops_cleanly(data, tmp_path, capsys):
    """A learning rate far too large overflows: a clear message and exit 3, no traceback."""
    assert main_cityscapes.main(argv(data, tmp_path, "run", "--method=sgd", "--lr", "1e12", epochs=2)) == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "summary.json").exists()


def finished_then_unfinished(data, tmp_path, *flags, epochs=1):
    """A run whose summary.json is gone, as if killed after its last checkpoint."""
    assert main_cityscapes.main(argv(data, tmp_path, "run", *flags, epochs=epochs)) == 0
    run = tmp_path / "run"
    (run / "summary.json").unlink()
    return run


def edit_config(run, edit):
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["settings"].update(lr_gamma=-0.5), "--lr-gamma -0.5: must be positive"),
    (lambda c: c["settings"].update(epochs="3"), '"settings.epochs" is \'3\'; expected an integer'),
    (lambda c: c["settings"].update(method="adamw"), '"settings.method" is \'adamw\'; expected one of adam,'),
    (lambda c: c.pop("settings"), '"settings" is missing'),
    (lambda c: c["settings"].pop("lr"), '"settings.lr" is missing'),
    (lambda c: c.update(data=["not", "an", "object"]), '"data" must be an object, not list'),
    (lambda c: c.update(tasks="semantic"), '"tasks" must be a non-empty list'),
    (lambda c: c.update(schema_version=99), "schema_version is 99; this version reads 1..6"),
])
def test_a_hand_edited_config_is_refused_naming_file_and_key(data, tmp_path, capsys, edit, named):
    run = finished_then_unfinished(data, tmp_path)
    edit_config(run, edit)
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.json'}: {named}" in err and "Traceback" not in err


def test_a_config_that_is_not_json_is_refused_naming_the_file(data, tmp_path, capsys):
    run = finished_then_unfinished(data, tmp_path)
    (run / "config.json").write_text("")
    assert main_cityscapes.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.json'}: not valid JSON" in err and "Traceback" not in err


def test_config_pointing_at_other_data_is_refused(data, tmp_path, tmp_path_factory, capsys):
    other = tiny_release(tmp_path_factory, "other", seed=3)
    run = finished_then_unfinished(data, tmp_path, epochs=2)
    edit_config(run, lambda c: c["data"].update(root=str(other)))
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "data.root was edited" in err and "refusing to mix" in err
    assert len(rows_without_wall_clock(run)) == 2  # nothing trained on the other data


def test_the_checkpoint_guards_the_data_even_when_the_config_identity_is_edited_too(data, tmp_path,
                                                                                      tmp_path_factory, capsys):
    other = tiny_release(tmp_path_factory, "other", seed=3)
    run = finished_then_unfinished(data, tmp_path)
    (run / "data_files.json").unlink()  # as a run from before that record: the checkpoint alone guards it
    other_identity = json.loads(json.dumps(data_identity(other)))
    edit_config(run, lambda c: c["data"].update(root=str(other), identity=other_identity))
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 2
    assert "its checkpoint records the data" in capsys.readouterr().err


def test_config_records_schema_and_environment_apart_from_settings(data, tmp_path):
    run = finished_then_unfinished(data, tmp_path)
    config = json.loads((run / "config.json").read_text())
    assert config["schema_version"] == 6 and config["data"]["identity"]["kind"] == "synthcity"
    assert not {"device", "num_workers", "in_memory"} & set(config["settings"])
    # the chosen method's options only (ew has none): another method's are no setting of this run
    assert not [key for key in config["settings"] if key.startswith(("pcgrad_", "nash_mtl_", "cagrad_"))]
    assert "main_task" not in config["settings"] and config["settings"]["head_grads"] == "own"
    assert {"device", "num_workers", "in_memory", "host", "cuda_visible_devices", "torch_threads"} \
        <= set(config["environment"])
    # a resume may move the run: the environment is this call's
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2", "--num-workers", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["environment"]["num_workers"] == 1


def test_a_schema_1_config_still_resumes(data, tmp_path):
    """Files written before schema_version: environment flags under settings, no identity."""
    run = finished_then_unfinished(data, tmp_path)

    def to_schema_1(config):
        del config["schema_version"], config["environment"], config["data"]["identity"]
        config["settings"].update(device="cpu", num_workers=0, in_memory=False)
    edit_config(run, to_schema_1)
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert len(rows_without_wall_clock(run)) == 2


def test_a_schema_2_config_without_the_diagnostics_flag_still_resumes(data, tmp_path):
    run = finished_then_unfinished(data, tmp_path)

    def to_schema_2(config):
        config["schema_version"] = 2
        del config["settings"]["diagnostics"]
    edit_config(run, to_schema_2)
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert len(rows_without_wall_clock(run)) == 2


def test_settings_added_later_read_as_their_legacy_values():
    from evaluation import run_config
    from experiment.flags import setting_definitions

    definitions = setting_definitions()
    old = {"settings": {"lr": 1e-4, "weighting": "mgda", "nash_mtl_tol": 1e-3}}
    filled = run_config.settings(old, definitions)
    # what a run from before these settings did: plain head gradients, Frank-Wolfe MGDA, float32
    assert filled["head_grads"] == "own" and filled["mgda_solver"] == "frank_wolfe" and filled["dtype"] == "float32"
    assert filled["mgda_convention"] == "ours" and "mgda_epsilon" not in filled  # recorded since MGDA came
    assert filled["mgda_normalization"] == "none"  # the authors' 'loss+' became the default later
    assert "nash_mtl_tol" not in filled  # another method's option, which older files recorded
    dwa = run_config.settings({"settings": {"weighting": "dwa", "dwa_temperature": 2.0}}, definitions)
    assert (dwa["dwa_mode"], dwa["dwa_window"]) == ("epoch", 25)  # DWA per epoch before the option
    aligned = run_config.settings({"settings": {"weighting": "aligned_mtl"}}, definitions)
    assert aligned["aligned_mtl_rank_eps"] == 2.220446049250313e-16  # torchjd's float64 cut-off


def test_a_schema_3_run_without_the_version_4_settings_still_resumes(data, tmp_path):
    """A run as version 3 made it: its settings had the version-3 behaviour, and neither its
    config.json nor its checkpoint records the keys version 4 added (nor does version 6
    record the options of other methods)."""
    import torch

    run = finished_then_unfinished(data, tmp_path, "--weighting", "mgda", "--mgda-solver", "frank_wolfe",
                                   "--head-grads", "own")
    added = ("head_grads", "dtype", "mgda_solver", "mgda_convention")

    def to_schema_3(record):
        record["schema_version"] = 3
        for key in added:
            del record["settings"][key]
    edit_config(run, to_schema_3)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    to_schema_3(state)
    torch.save(state, run / "checkpoint.pt")
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert len(rows_without_wall_clock(run)) == 2


def test_an_empty_latest_checkpoint_falls_back_to_the_previous_one(data, tmp_path, capsys):
    assert main_cityscapes.main(argv(data, tmp_path, "full", epochs=3)) == 0
    run = finished_then_unfinished(data, tmp_path, epochs=2)
    (run / "checkpoint.pt").write_bytes(b"")
    capsys.readouterr()
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint.pt is corrupt or truncated" in out and "at epoch 2" in out
    assert rows_without_wall_clock(run) == rows_without_wall_clock(tmp_path / "full")


@pytest.mark.parametrize("damage", [b"", b"epoch,layer_in", b"epoch,layer_index,layer\n0,3"])
def test_a_torn_au_csv_is_rebuilt_from_the_checkpoint(data, tmp_path, damage):
    assert main_cityscapes.main(argv(data, tmp_path, "full", "--track-au", epochs=2)) == 0
    run = finished_then_unfinished(data, tmp_path, "--track-au", epochs=1)
    (run / "au.csv").write_bytes(damage)
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 0
    # the training first: a mismatch of au.csv alone is the rebuild's, not the run's
    assert rows_without_wall_clock(run) == rows_without_wall_clock(tmp_path / "full")
    assert (run / "au.csv").read_text() == (tmp_path / "full" / "au.csv").read_text()
    assert not list(run.glob("*.tmp"))


def test_epochs_extend_a_finished_run(data, tmp_path, capsys):
    assert main_cityscapes.main(argv(data, tmp_path, "full", epochs=3)) == 0
    assert main_cityscapes.main(argv(data, tmp_path, "run", epochs=2)) == 0
    run = tmp_path / "run"
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "2"]) == 2
    assert "--epochs must be larger" in capsys.readouterr().err
    assert main_cityscapes.main(["--resume", str(run), "--epochs", "3"]) == 0
    assert rows_without_wall_clock(run) == rows_without_wall_clock(tmp_path / "full")
    summary = lambda d: json.loads((d / "summary.json").read_text())["last10"]
    assert summary(run) == summary(tmp_path / "full")
    assert json.loads((run / "config.json").read_text())["settings"]["epochs"] == 3
