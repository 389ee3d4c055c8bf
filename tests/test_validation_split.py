"""The validation split (issue 26, docs/fair_comparisons.md "The validation split"): held out of
train/ by --val-fraction and --val-seed, the same for every method and seed, disjoint from the
training and test samples, recorded and refused when mixed; the --select-by objective and the
epoch it selects; and a run with default flags writes what it wrote before the split existed."""
import json
import shutil
import subprocess
import sys

import global_state
import pytest
from run_helpers import REPO, run_argv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_baseline import make_run

import main_cityscapes
from data.validation_split import held_out, remaining, split_hash
from evaluation import run_config, run_record, selection
from evaluation.aggregate.collect import check_sweep_setup
from evaluation.baseline import build_baseline
from evaluation.delta_m import delta_m, load_val_baseline
from evaluation.run_record import RunError, RunFolderError, read_run
from evaluation.summary import summarize
from evaluation.tensorboard_log import layout
from experiment.flags import parse_args, resumed_args, setting_definitions, settings_of
from experiment.setup import Experiment

TASKS = ("semantic", "depth")
SPLIT = ("--val-fraction", "0.25")
N_TRAIN = 16  # tiny_synthcity's


@pytest.fixture(scope="module")
def split_run(tiny_synthcity, tmp_path_factory):
    """A finished 2-epoch run holding 4 of the 16 training samples out."""
    out = tmp_path_factory.mktemp("split")
    with global_state.seeded_and_restored():
        assert main_cityscapes.main(run_argv(tiny_synthcity, out, "run", *SPLIT, epochs=2)) == 0
    return out / "run"


def read_rows(run_dir):
    return run_record.read_metrics(run_dir)


# ---------------------------------------------------------------- the split


def test_held_out_depends_only_on_the_train_count_fraction_and_seed():
    first = held_out(N_TRAIN, 0.25, 1234)
    assert first == held_out(N_TRAIN, 0.25, 1234) and first == sorted(set(first))
    assert len(first) == 4 and all(0 <= i < N_TRAIN for i in first)
    assert held_out(N_TRAIN, 0.25, 1235) != first  # --val-seed draws another subset
    assert remaining(N_TRAIN, first) == [i for i in range(N_TRAIN) if i not in first]
    assert split_hash(first) == split_hash(list(reversed(first))) != split_hash(held_out(N_TRAIN, 0.25, 1235))


@pytest.mark.parametrize("n_train, fraction", [(3, 0.1), (3, 0.9), (1, 0.5)])
def test_a_fraction_leaving_no_sample_on_either_side_is_refused(n_train, fraction):
    with pytest.raises(ValueError, match=rf"--val-fraction {fraction}: of the {n_train} training samples"):
        held_out(n_train, fraction, 1234)


@pytest.mark.parametrize("flags, named", [(["--val-fraction", "1"], "--val-fraction 1.0"),
                                          (["--val-fraction", "-0.1"], "--val-fraction -0.1"),
                                          (["--val-seed", "-1"], "--val-seed -1"),
                                          (["--select-by", "test/miou"], "never looks at the test split"),
                                          (["--select-by", "val/inst_err"], "not a metric of the tasks")])
def test_bad_split_flags_are_refused_naming_the_flag(flags, named, capsys):
    with pytest.raises(SystemExit):
        parse_args(flags)
    assert named in capsys.readouterr().err


def test_the_split_is_the_same_for_every_method_and_seed_and_disjoint_from_training_and_test(
        tiny_synthcity, tmp_path, seeded_and_restored):
    built = []
    for i, flags in enumerate((["--method", "adam", "--seed", "0"],
                               ["--method", "adam_with_adatask", "--weighting", "pcgrad", "--seed", "7"])):
        exp = Experiment(parse_args(run_argv(tiny_synthcity, tmp_path, f"r{i}", *SPLIT, *flags, epochs=1)))
        exp.ownership.release()
        built.append(exp)
    one, other = built
    assert one.val_set.indices == other.val_set.indices == held_out(N_TRAIN, 0.25, 1234)
    assert one.config["settings"]["val_split_sha256"] == other.config["settings"]["val_split_sha256"]
    # the samples the training loader actually draws, as indices of train/
    used = {one.train_set.indices[i] for batch in one.loader(one.train_set, 0, shuffle=True).batch_sampler
            for i in batch}
    assert used == set(range(N_TRAIN)) - set(one.val_set.indices) and len(used) == 12
    # val is carved from train/, unaugmented; test is the release's val/ folder
    assert one.val_set.dataset.split == "train" and not one.val_set.dataset.augment
    assert one.train_set.dataset.augment  # the split's view is unaugmented, training is not
    assert one.test_set.split == "val" and len(one.test_set) == 8


# ---------------------------------------------------------------- recorded, refused when mixed


def test_config_records_the_split_and_a_resume_must_agree(split_run):
    config = json.loads((split_run / run_record.CONFIG).read_text())
    settings = config["settings"]
    assert (settings["val_fraction"], settings["val_seed"], settings["select_by"]) == (0.25, 1234, "auto")
    assert settings["val_split_sha256"] == split_hash(held_out(N_TRAIN, 0.25, 1234))
    assert (config["data"]["train_samples"], config["data"]["validation_samples"]) == (12, 4)
    for flags, named in ((["--val-fraction", "0.5"], "--val-fraction 0.25"), (["--val-seed", "3"], "--val-seed 1234")):
        with pytest.raises(RunFolderError, match=named):
            resumed_args(parse_args(["--resume", str(split_run), "--epochs", "3", *flags]))
    args, _ = resumed_args(parse_args(["--resume", str(split_run), "--epochs", "3", "--select-by", "val/miou"]))
    assert args.select_by == "val/miou"  # bookkeeping: summary.json is derived, so it may change


def test_an_extended_run_keeps_its_split_and_another_select_by_rewrites_every_objective(split_run, tmp_path,
                                                                                      seeded_and_restored):
    copy = tmp_path / "copy"
    shutil.copytree(split_run, copy)
    assert main_cityscapes.main(["--resume", str(copy), "--epochs", "3", "--select-by", "val/abs_err"]) == 0
    rows = read_rows(copy)
    assert rows[:2] == [dict(row, val_objective=row["val"]["abs_err"]) for row in read_rows(split_run)]
    assert [row["val_objective"] for row in rows] == [row["val"]["abs_err"] for row in rows]
    summary = read_run(copy, setting_definitions()).summary
    assert summary["selection"]["by"] == "val/abs_err" and summary["selection"]["direction"] == "minimize"
    assert summary["best_val_epoch"] == min(range(3), key=lambda i: (rows[i]["val"]["abs_err"], i))


def test_a_resume_whose_split_no_longer_matches_the_recorded_hash_is_refused(split_run, tmp_path, capsys,
                                                                            seeded_and_restored):
    copy = tmp_path / "copy"
    shutil.copytree(split_run, copy)
    (copy / run_record.SUMMARY).unlink()
    config = json.loads((copy / run_record.CONFIG).read_text())
    config["settings"]["val_split_sha256"] = "0" * 64
    (copy / run_record.CONFIG).write_text(json.dumps(config))
    assert main_cityscapes.main(["--resume", str(copy)]) == 2
    assert "val_split_sha256" in capsys.readouterr().err


def test_aggregation_refuses_runs_of_another_split_naming_the_setting(split_run, tmp_path):
    sweep = tmp_path / "sweep"
    for name, seed in (("a", 1234), ("b", 99)):
        shutil.copytree(split_run, sweep / name)
        config = json.loads((sweep / name / run_record.CONFIG).read_text())
        config["settings"]["val_seed"] = seed
        config["settings"]["val_split_sha256"] = split_hash(held_out(N_TRAIN, 0.25, seed))
        (sweep / name / run_record.CONFIG).write_text(json.dumps(config))
    runs = [read_run(sweep / name, setting_definitions()) for name in ("a", "b")]
    with pytest.raises(RunError, match=r"(?s)val_seed: 1234 \(a\) vs 99 \(b\).*val_split_sha256"):
        check_sweep_setup(sweep, runs, ())
    # against a run without a split: the split's settings are absent on one side
    without = json.loads((split_run / run_record.CONFIG).read_text())
    for key in run_config.SPLIT_SETTINGS:
        del without["settings"][key]
    _, differences = run_config.shared_setup([runs[0], run_record.Run(sweep / "c", without, None, runs[0].definitions)])
    assert {"val_fraction", "val_seed", "val_split_sha256"} <= set(differences)


def add_val(run_dir, tasks, split):
    """Gives a fabricated run (test_baseline.make_run) val rows, 10 % better than its test rows,
    and the settings of a validation split."""
    config = json.loads((run_dir / run_record.CONFIG).read_text())
    config["settings"] |= split
    run_record.write_json(run_dir / run_record.CONFIG, config)
    rows = read_rows(run_dir)
    for row in rows:
        row["val"] = {key: value * 1.1 for key, value in row["test"].items() if value is not None}
    run_record.write_metrics(run_dir, rows)
    summary = summarize(rows, None, None, selection.NORMALIZED_MEAN, tasks)
    run_record.write_json(run_dir / run_record.SUMMARY, summary)


def test_baselines_record_val_metrics_and_runs_refuse_a_baseline_of_another_split(tmp_path):
    split = {"val_fraction": 0.25, "val_seed": 1234, "val_split_sha256": split_hash(held_out(40, 0.25, 1234))}
    runs = []
    for task, last10 in (("semantic", {"miou": 0.6, "pix_acc": 0.8}), ("depth", {"abs_err": 0.02, "rel_err": 0.3})):
        run_dir = make_run(tmp_path, task, last10, tasks=(task,))
        add_val(run_dir, (task,), split)
        runs.append(read_run(run_dir, setting_definitions()))
    baseline = build_baseline(runs)
    assert baseline["val"] == pytest.approx({"miou": 0.66, "pix_acc": 0.88, "abs_err": 0.022, "rel_err": 0.33})
    assert baseline["miou"] == pytest.approx(0.6) and baseline["source"]["setup"]["val_seed"] == 1234
    path = tmp_path / "baseline.json"
    run_record.write_json(path, baseline)
    assert load_val_baseline(path, TASKS, split) == pytest.approx(baseline["val"])
    with pytest.raises(ValueError, match="val_seed 1234, this run has 7"):
        load_val_baseline(path, TASKS, split | {"val_seed": 7})
    runs.append(read_run(make_run(tmp_path, "depth-no-split", {"abs_err": 0.02, "rel_err": 0.3}, seed=1,
                                  tasks=("depth",)), setting_definitions()))
    with pytest.raises(RunError, match="val_fraction"):
        build_baseline(runs)


# ---------------------------------------------------------------- the objective and the selected epoch

HAND_ROWS = [  # normalized_mean by hand: (mIoU / 0.30 − AbsErr / 0.020) / 2
    {"epoch": 0, "val": {"miou": 0.30, "abs_err": 0.020, "loss_depth": 0.5, "delta_m": 5.0}},  # (1 − 1) / 2 = 0
    {"epoch": 1, "val": {"miou": 0.36, "abs_err": 0.015, "loss_depth": 0.4, "delta_m": 2.0}},  # (1.2 − 0.75) / 2
    {"epoch": 2, "val": {"miou": 0.33, "abs_err": 0.010, "loss_depth": 0.4, "delta_m": 2.0}},  # (1.1 − 0.5) / 2
]


@pytest.mark.parametrize("name, direction, best", [
    ("normalized_mean", "maximize", 2), ("val/miou", "maximize", 1), ("val/abs_err", "minimize", 2),
    ("delta_m", "minimize", 1),  # epochs 1 and 2 tie: the earliest wins
    ("val/loss_depth", "minimize", 1),
])
def test_best_epoch_against_hand_computed_rows(name, direction, best):
    assert selection.direction(name) == direction
    assert selection.best_epoch(HAND_ROWS, name, TASKS) == best


def test_normalized_mean_by_hand():
    assert selection.objective_values(HAND_ROWS, "normalized_mean", TASKS) == pytest.approx([0.0, 0.225, 0.3])
    shifted = [dict(row, epoch=row["epoch"] + 5) for row in HAND_ROWS]  # the row's own "epoch" is returned
    assert selection.best_epoch(shifted, "normalized_mean", TASKS) == 7


def test_resolve_picks_delta_m_only_with_a_val_baseline_and_refuses_test_objectives():
    assert selection.resolve("auto", has_val_baseline=True) == "delta_m"
    assert selection.resolve("auto", has_val_baseline=False) == "normalized_mean"
    assert selection.resolve("val/rel_err", False, TASKS) == "val/rel_err"
    for bad, message in (("test/miou", "--select-by test/miou: selection never looks at the test split"),
                         ("delta_m", "--select-by delta_m: needs a --baseline file with val metrics"),
                         ("miou", "--select-by miou: expected auto, delta_m, normalized_mean or val/<metric>"),
                         ("val/inst_err", "not a metric of the tasks semantic \\+ depth")):
        with pytest.raises(ValueError, match=message):
            selection.resolve(bad, False, TASKS)


# ---------------------------------------------------------------- end to end


def test_a_run_with_a_validation_split_writes_val_rows_and_the_selected_epoch(split_run):
    rows = read_rows(split_run)
    assert [set(row) for row in rows] == [{"epoch", "lr", "seconds", "train", "test", "val", "val_objective"}] * 2
    assert all(set(row["val"]) == set(row["test"]) and row["val"]["delta_m"] is None for row in rows)
    assert rows[0]["val"] != rows[0]["test"]  # another split's metrics
    objective = selection.objective_values(rows, "normalized_mean", TASKS)
    assert [row["val_objective"] for row in rows] == objective and objective[0] == 0.0
    summary = json.loads((split_run / run_record.SUMMARY).read_text())
    best = selection.best_epoch(rows, "normalized_mean", TASKS)
    assert summary["best_val_epoch"] == best
    assert summary["selection"] == {"by": "normalized_mean", "direction": "maximize", "value": objective[best]}
    assert summary["test_at_best_val"] == rows[best]["test"] and summary["val_at_best_val"] == rows[best]["val"]
    assert read_run(split_run, setting_definitions()).summary["best_val_epoch"] == best  # consistent on re-read
    events = EventAccumulator(str(split_run), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("1 val/miou")] == pytest.approx([row["val"]["miou"] for row in rows])
    assert [e.value for e in events.Scalars("1 val/objective")] == pytest.approx(objective)
    charts = {title for category in layout(TASKS, with_delta_m=False, with_val=True).values() for title in category}
    assert {"miou (val)", "loss_depth (val)", "val objective (--select-by)"} <= charts


def test_a_baseline_with_val_metrics_gives_val_delta_m_and_auto_selects_by_it(tiny_synthcity, tmp_path,
                                                                           seeded_and_restored):
    test = {"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.05, "rel_err": 0.5}
    val = {"miou": 0.4, "pix_acc": 0.7, "abs_err": 0.06, "rel_err": 0.6}
    (tmp_path / "b.json").write_text(json.dumps(dict(test, val=val)))
    argv = run_argv(tiny_synthcity, tmp_path, "run", *SPLIT, "--baseline", str(tmp_path / "b.json"), epochs=1)
    assert main_cityscapes.main(argv) == 0
    [row] = read_rows(tmp_path / "run")
    assert row["val"]["delta_m"] == pytest.approx(delta_m(row["val"], val)) == row["val_objective"]
    assert row["test"]["delta_m"] == pytest.approx(delta_m(row["test"], test))
    summary = json.loads((tmp_path / "run" / run_record.SUMMARY).read_text())
    assert summary["selection"]["by"] == "delta_m" and summary["selection"]["direction"] == "minimize"
    assert json.loads((tmp_path / "run" / run_record.CONFIG).read_text())["baseline"]["val_metrics"] == val


def test_defaults_leave_config_metrics_and_summary_as_before(tiny_synthcity, tmp_path, seeded_and_restored):
    assert main_cityscapes.main(run_argv(tiny_synthcity, tmp_path, "run", epochs=1)) == 0
    config = json.loads((tmp_path / "run" / run_record.CONFIG).read_text())
    assert not run_config.SPLIT_SETTINGS & set(config["settings"])
    assert "validation_samples" not in config["data"] and set(config["baseline"]) == {"name", "reason", "metrics"}
    assert config["data"]["train_samples"] == N_TRAIN
    [row] = read_rows(tmp_path / "run")
    assert set(row) == {"epoch", "lr", "seconds", "train", "test"}
    summary = json.loads((tmp_path / "run" / run_record.SUMMARY).read_text())
    assert set(summary) == {"final", "last10", "last10_epochs", "delta_m"}
    # --val-fraction 0 given explicitly is the default: nothing of the split is recorded
    explicit = run_argv(tiny_synthcity, tmp_path, "run", "--val-fraction", "0", "--val-seed", "5", epochs=1)
    assert settings_of(parse_args(explicit)) == settings_of(parse_args(run_argv(tiny_synthcity, tmp_path, "run",
                                                                                 epochs=1)))


def test_the_objective_needs_no_torch():
    """sweeps' --status checks the summaries of runs with a split without importing torch."""
    code = ("import sys; from evaluation import selection; "
            f"rows = {HAND_ROWS!r}; "
            "assert [selection.best_epoch(rows, n, ('semantic', 'depth')) for n in ('normalized_mean', 'val/abs_err')]"
            " == [2, 2]; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
