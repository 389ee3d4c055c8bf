"""evaluation.baseline: single-task run folders → the baseline JSON that --baseline reads.

make_run fabricates run folders in the format main_cityscapes.py writes; test_aggregate uses it too.
"""
import json

import pytest

from evaluation import run_record
from evaluation.baseline import build_baseline, main
from evaluation.delta_m import delta_m, load_baseline
from evaluation.run_config import setup_of
from evaluation.run_record import RunError, read_run
from experiment.flags import setting_definitions

TASK_KEYS = {"semantic": ("miou", "pix_acc"), "instance": ("inst_err",), "depth": ("abs_err", "rel_err")}
LOWER_IS_BETTER = ("inst_err", "abs_err", "rel_err")
EPOCHS = 12
# config.json's "settings" of a fabricated small SynthCity run: the settings that tests change,
# and weighting options of each type, as main_cityscapes.py records them.
SETTINGS = {"classes": 7, "arch": "mtan", "width_mult": 0.25, "epochs": EPOCHS, "batch_size": 8, "lr": 1e-4,
            "lr_step": 100, "lr_gamma": 0.5, "augment": True, "depth_rule": "divide", "clip_grad_norm": None,
            "pcgrad_seed": 0, "gdod_zeros": "shared", "hydalearn_eta": 0.01, "amp": False, "dataset": "synthcity",
            "data_path": None, "image_size": "64x128", "synthcity_train": 40, "synthcity_val": 16, "baseline": None,
            "diagnostics_every": 50, "name": None, "out": "runs", "resume": None}
DATA = {"name": "synthcity", "root": "runs/.synthcity/s0", "synthetic": True, "image_size": [64, 128],
        "train_samples": 40, "val_samples": 16, "identity": {"kind": "synthcity", "generator": {"seed": 0}}}
ENVIRONMENT = {"device": "cpu", "num_workers": 0, "in_memory": False}


def make_run(parent, name, last10, method="adam", weighting="ew", seed=0, tasks=("semantic", "depth"),
             finished=True, data=None, schema=2, **settings):
    """A run folder of settings["epochs"] epochs (default EPOCHS) whose last 10 epochs' test metrics
    are `last10` (worse epochs before); `data` and `settings` change config.json's "data" and
    "settings". Schema 1: the format before schema_version, with the environment flags among the
    settings and no data identity."""
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    config = {"schema_version": 2,
              "settings": SETTINGS | {"method": method, "weighting": weighting, "seed": seed, "tasks": list(tasks)}
              | settings,
              "data": DATA | (data or {}), "tasks": list(tasks), "environment": ENVIRONMENT}
    if schema == 1:
        config["settings"] |= config.pop("environment")
        del config["schema_version"], config["data"]["identity"]
    run_record.write_json(run_dir / run_record.CONFIG, config)
    keys = [k for t in tasks for k in TASK_KEYS[t]]
    rows, epochs = [], settings.get("epochs", EPOCHS)
    for epoch in range(epochs if finished else 4):
        worse = 1.5 if epoch < epochs - 10 else 1.0  # only the last 10 epochs count
        test = {k: last10[k] * (worse if k in LOWER_IS_BETTER else 1 / worse) for k in keys}
        rows.append({"epoch": epoch, "lr": 1e-4, "seconds": 1.0, "train": dict(test), "test": dict(test, delta_m=None)})
    run_record.write_metrics(run_dir, rows)
    if finished:
        run_record.write_json(run_dir / run_record.SUMMARY, run_record.summarize(rows, None, None))
    return run_dir


def single_task_runs(parent, seeds=(0, 1), **changes):
    """Semantic runs with mIoU 0.60, 0.62 and PixAcc 0.84, 0.86; depth runs with AbsErr
    0.018, 0.020 and RelErr 0.25, 0.27 (seed 0, seed 1)."""
    dirs = []
    for i, seed in enumerate(seeds):
        semantic = {"miou": 0.60 + 0.02 * i, "pix_acc": 0.84 + 0.02 * i}
        depth = {"abs_err": 0.018 + 0.002 * i, "rel_err": 0.25 + 0.02 * i}
        dirs.append(make_run(parent, f"single-semantic-s{seed}", semantic, seed=seed, tasks=("semantic",), **changes))
        dirs.append(make_run(parent, f"single-depth-s{seed}", depth, seed=seed, tasks=("depth",), **changes))
    return dirs


def test_baseline_is_the_mean_over_seeds_of_the_last10_means(tmp_path):
    baseline = build_baseline([read_run(d, setting_definitions()) for d in single_task_runs(tmp_path)])
    expected = {"miou": 0.61, "pix_acc": 0.85, "abs_err": 0.019, "rel_err": 0.26}
    assert {k: baseline[k] for k in expected} == pytest.approx(expected)
    source = baseline["source"]
    # Two values a, b: sample std |a - b| / sqrt(2).
    assert source["std"] == pytest.approx({"miou": 0.02 / 2 ** 0.5, "pix_acc": 0.02 / 2 ** 0.5,
                                           "abs_err": 0.002 / 2 ** 0.5, "rel_err": 0.02 / 2 ** 0.5})
    assert source["seeds"] == {"semantic": [0, 1], "depth": [0, 1]}
    assert source["runs"]["depth"] == [str(tmp_path / "single-depth-s0"), str(tmp_path / "single-depth-s1")]
    assert source["setup"] == setup_of(json.loads((tmp_path / "single-depth-s0" / run_record.CONFIG).read_text()),
                                       setting_definitions())
    assert source["setup"]["lr"] == 1e-4 and source["setup"]["data_identity"] == DATA["identity"]


def test_cli_writes_a_file_that_load_baseline_reads(tmp_path, capsys):
    out = tmp_path / "out" / "baseline.json"
    assert main([str(d) for d in single_task_runs(tmp_path / "runs", seeds=(3,))] + ["--out", str(out)]) == 0
    assert load_baseline(out, ("semantic", "depth")) == pytest.approx({"miou": 0.60, "pix_acc": 0.84, "abs_err": 0.018, "rel_err": 0.25})
    written = json.loads(out.read_text())
    assert written["source"]["std"] == {"miou": None, "pix_acc": None, "abs_err": None, "rel_err": None}  # n=1
    assert "n=1" in capsys.readouterr().out


def _error(capsys, run_dirs, tmp_path):
    assert main([str(d) for d in run_dirs] + ["--out", str(tmp_path / "b.json")]) == 2
    assert not (tmp_path / "b.json").exists()
    return capsys.readouterr().err


def test_refuses_unfinished_runs(tmp_path, capsys):
    dirs = single_task_runs(tmp_path)
    unfinished = make_run(tmp_path, "single-depth-s2", {"abs_err": 0.02, "rel_err": 0.3}, seed=2, tasks=("depth",),
                          finished=False)
    err = _error(capsys, dirs + [unfinished], tmp_path)
    assert str(unfinished) in err and "unfinished" in err and "--resume" in err


def test_refuses_multi_task_runs(tmp_path, capsys):
    multi = make_run(tmp_path, "adam-ew-s0", {"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.02, "rel_err": 0.3})
    err = _error(capsys, single_task_runs(tmp_path) + [multi], tmp_path)
    assert str(multi) in err and "single-task" in err


@pytest.mark.parametrize("change, word", [
    ({"classes": 19}, "classes"), ({"data": {"image_size": [128, 256]}}, "image_size"),
    ({"data": {"name": "cityscapes", "synthetic": False}}, "data_name"), ({"arch": "split"}, "arch"),
    ({"width_mult": 0.5}, "width_mult"), ({"batch_size": 16}, "batch_size: 8"), ({"epochs": 20}, "epochs: 12"),
    ({"depth_rule": "multiply"}, "depth_rule: divide"),
    ({"image_resampling": "align_corners"}, "image_resampling: opencv"),
    ({"data": {"identity": {"kind": "synthcity", "generator": {"seed": 1}}}}, "data_identity")])
def test_refuses_runs_of_different_setups(tmp_path, capsys, change, word):
    other = make_run(tmp_path, "single-depth-s5", {"abs_err": 0.02, "rel_err": 0.3}, seed=5, tasks=("depth",), **change)
    err = _error(capsys, single_task_runs(tmp_path) + [other], tmp_path)
    assert "(single-depth-s5)\n" in err and word in err and "Traceback" not in err


def test_refuses_runs_with_another_lr_naming_both_values_and_the_runs(tmp_path, capsys):
    other = make_run(tmp_path, "single-depth-s5", {"abs_err": 0.02, "rel_err": 0.3}, seed=5, tasks=("depth",), lr=3e-3)
    err = _error(capsys, single_task_runs(tmp_path) + [other], tmp_path)
    assert err == ("error: the single-task runs differ in settings that change results:\n"
                   "  lr: 0.0001 (single-semantic-s0, single-depth-s0, single-semantic-s1, single-depth-s1) "
                   "vs 0.003 (single-depth-s5)\n"
                   "a baseline serves one setup: give only the single-task runs made with the settings of the "
                   "multi-task runs it is for, and leave the others out\n")


def test_names_every_differing_setting_and_runs_by_path_where_names_repeat(tmp_path, capsys):
    dirs = single_task_runs(tmp_path, lr=3e-3, batch_size=16)
    dirs.append(make_run(tmp_path / "other", "single-semantic-s0", {"miou": 0.6, "pix_acc": 0.84}, seed=2,
                         tasks=("semantic",)))
    err = _error(capsys, dirs, tmp_path)
    runs = f"{dirs[0]}, {dirs[1]}, {dirs[2]}, {dirs[3]}"
    assert f"\n  batch_size: 16 ({runs}) vs 8 ({dirs[4]})\n  lr: 0.003 ({runs}) vs 0.0001 ({dirs[4]})\n" in err


def test_needs_a_run_of_every_task_asked_for(tmp_path, capsys):
    semantic_only = [d for d in single_task_runs(tmp_path) if "semantic" in d.name]
    err = _error(capsys, semantic_only + ["--tasks", "semantic", "depth"], tmp_path)
    assert "no single-task depth run" in err and "--tasks depth" in err


def test_three_tasks_give_five_metrics_and_delta_m_averages_them(tmp_path, capsys):
    """CityScapes-3: the instance runs add InstErr; Δm of a 3-task run averages five relative changes."""
    dirs = single_task_runs(tmp_path, seeds=(0,))
    dirs += [make_run(tmp_path, f"single-instance-s{seed}", {"inst_err": err}, seed=seed, tasks=("instance",))
             for seed, err in ((0, 4.0), (1, 6.0))]
    out = tmp_path / "baseline.json"
    assert main([str(d) for d in dirs] + ["--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert [k for k in written if k != "source"] == ["miou", "pix_acc", "inst_err", "abs_err", "rel_err"]
    assert written["inst_err"] == pytest.approx(5.0) and written["source"]["seeds"]["instance"] == [0, 1]
    assert written["source"]["tasks"] == ["semantic", "instance", "depth"]
    baseline = load_baseline(out, ("semantic", "instance", "depth"))
    run = {"miou": 0.66, "pix_acc": 0.84, "inst_err": 4.0, "abs_err": 0.018, "rel_err": 0.30}
    # mIoU +10 % (better: −10), PixAcc 0, InstErr −20 % (better: −20), AbsErr 0, RelErr +20 % (worse: +20)
    assert delta_m(run, baseline) == pytest.approx((-10 + 0 - 20 + 0 + 20) / 5)
    with pytest.raises(ValueError, match="no inst_err"):
        load_baseline(_two_task_file(tmp_path), ("semantic", "instance", "depth"))


def _two_task_file(tmp_path):
    path = tmp_path / "two-task.json"
    path.write_text(json.dumps({"miou": 0.6, "pix_acc": 0.8, "abs_err": 0.02, "rel_err": 0.3}))
    return path


def test_refuses_a_seed_twice_and_folders_that_are_not_runs(tmp_path, capsys):
    dirs = single_task_runs(tmp_path)
    twin = make_run(tmp_path, "copy-of-semantic-s0", {"miou": 0.6, "pix_acc": 0.84}, seed=0, tasks=("semantic",))
    err = _error(capsys, dirs + [twin], tmp_path)
    assert "seed 0" in err and str(twin) in err
    (tmp_path / "empty").mkdir()
    err = _error(capsys, dirs + [tmp_path / "empty"], tmp_path)
    assert str(tmp_path / "empty") in err and "config.json" in err


def test_names_the_summary_that_lacks_a_metric(tmp_path):
    dirs = single_task_runs(tmp_path)
    summary = dirs[0] / run_record.SUMMARY
    data = json.loads(summary.read_text())
    del data["last10"]["miou"]
    summary.write_text(json.dumps(data))
    with pytest.raises(RunError, match="summary.json.*miou"):
        build_baseline([read_run(d, setting_definitions()) for d in dirs])


def test_names_a_config_without_the_expected_fields(tmp_path):
    run_dir = single_task_runs(tmp_path)[0]
    config = json.loads((run_dir / run_record.CONFIG).read_text())
    del config["tasks"]
    (run_dir / run_record.CONFIG).write_text(json.dumps(config))
    with pytest.raises(RunError, match=r'config\.json: "tasks" must be a non-empty list'):
        read_run(run_dir, setting_definitions())


def test_a_short_run_averages_and_says_all_its_epochs(tmp_path, capsys):
    out = tmp_path / "baseline.json"
    dirs = single_task_runs(tmp_path / "runs", epochs=4)
    for run_dir in dirs:  # a summary.json from before "last10_epochs": N from metrics.jsonl's rows
        summary = json.loads((run_dir / run_record.SUMMARY).read_text())
        summary.pop("last10_epochs", None)
        (run_dir / run_record.SUMMARY).write_text(json.dumps(summary))
    assert [read_run(d, setting_definitions()).last_epochs for d in dirs] == [4] * 4
    assert main([str(d) for d in dirs] + ["--out", str(out)]) == 0
    kind = json.loads(out.read_text())["source"]["kind"]
    assert kind == "single-task runs, per run the mean of its test metrics over the last 4 epochs, then the mean over seeds"
    assert kind in capsys.readouterr().out


def test_last_epochs_in_the_summary_must_be_those_of_metrics_jsonl(tmp_path):
    """N is recomputed from metrics.jsonl; a summary.json that says otherwise is inconsistent."""
    dirs = single_task_runs(tmp_path)
    summary = json.loads((dirs[0] / run_record.SUMMARY).read_text())
    (dirs[0] / run_record.SUMMARY).write_text(json.dumps(summary | {"last10_epochs": 7}))
    with pytest.raises(RunError, match="summary.json does not match metrics.jsonl: last10_epochs 7 vs 10"):
        read_run(dirs[0], setting_definitions())


def test_reads_only_the_metrics_it_needs_beside_a_per_class_dict(tmp_path):
    """metrics.jsonl rows and summary.json's dicts may hold "class_iou": {class: IoU or null}."""
    dirs = single_task_runs(tmp_path)
    for run_dir in dirs:
        per_class = {"road": 0.9, "rider": None}
        rows = run_record.read_metrics(run_dir)
        run_record.write_metrics(run_dir, [row | {"test": row["test"] | {"class_iou": per_class}} for row in rows])
        summary = json.loads((run_dir / run_record.SUMMARY).read_text())
        for key in ("final", "last10"):
            summary[key]["class_iou"] = per_class
        (run_dir / run_record.SUMMARY).write_text(json.dumps(summary))
    baseline = build_baseline([read_run(d, setting_definitions()) for d in dirs])
    assert baseline["miou"] == pytest.approx(0.61) and baseline["rel_err"] == pytest.approx(0.26)
