"""A crafted or inconsistent run folder never makes a "finished" run: a checkpoint that does not fit
its run is refused naming the file and the key (resume falls back to checkpoint.prev.pt where that
one fits), and a finished run whose summary.json or metrics.jsonl disagree is named and refused by
resume, the aggregation, the baselines and --status (docs/design.md, "Resume" and "Run folder")."""
import json
import shutil

import global_state
import pytest
import torch
from test_baseline import make_run, single_task_runs

import main_cityscapes
from evaluation import run_record
from evaluation.aggregate import aggregate
from evaluation.baseline import main as baseline_main
from evaluation.summary import summarize
from experiment.flags import setting_definitions
from sweeps import plan, status

TWO_EPOCHS = 2


@pytest.fixture(scope="module")
def finished_run(tiny_synthcity, tmp_path_factory):
    """A real finished run of 2 epochs (checkpoint.pt of epoch 2, checkpoint.prev.pt of epoch 1)."""
    out = tmp_path_factory.mktemp("consistency")
    argv = ["--data-path", str(tiny_synthcity), "--epochs", str(TWO_EPOCHS), "--batch-size", "4",
            "--width-mult", "0.125", "--num-workers", "0", "--device", "cpu", "--out", str(out), "--name", "base"]
    with global_state.seeded_and_restored():  # main() seeds the global RNGs: put back for the tests after
        assert main_cityscapes.main(argv) == 0
    return out / "base"


def copy_of(run_dir, tmp_path, finished=True):
    """A copy of the run; unfinished: as if killed after its last checkpoint."""
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)
    if not finished:
        (copy / run_record.SUMMARY).unlink()
    return copy


def resume(run_dir, *flags):
    return main_cityscapes.main(["--resume", str(run_dir), "--num-workers", "0", *flags])


class RunsCode:
    """Unpickled, it would call print: torch.load(weights_only=True) must refuse it unread."""

    def __reduce__(self):
        return print, ("this ran",)


def without(state, key):
    return {k: v for k, v in state.items() if k != key}


CRAFTED = {  # a checkpoint made from the good one → what the refusal names
    "epoch far beyond the run": (lambda s: s | {"epoch": 10**6}, '"epoch" is 1000000, expected 1 to 2'),
    "negative epoch": (lambda s: s | {"epoch": -5}, '"epoch" is -5, expected 1 to 2'),
    "no model": (lambda s: without(s, "model"), 'has no "model"'),
    "a list, not a dict": (lambda s: list(s.values()), "holds a list, expected a dict"),
    "rows of a string": (lambda s: s | {"rows": "2 epochs"}, '"rows" is a str, expected list'),
    "rows fewer than its epoch": (lambda s: s | {"rows": s["rows"][:1]}, '"rows" holds 1 epochs, but "epoch" says 2'),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_a_crafted_checkpoint_without_a_good_previous_one_is_refused_naming_file_and_key(
        finished_run, tmp_path, capsys, seeded_and_restored, case):
    run_dir = copy_of(finished_run, tmp_path, finished=False)
    craft, named = CRAFTED[case]
    latest = run_dir / "checkpoint.pt"
    torch.save(craft(torch.load(latest, weights_only=True)), latest)
    (run_dir / "checkpoint.prev.pt").unlink()
    metrics = (run_dir / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert resume(run_dir, "--epochs", "3") == 2
    err = capsys.readouterr().err
    assert f"{latest} does not fit the run: {named}" in err and "no usable checkpoint left" in err
    assert not (run_dir / "summary.json").exists()
    assert (run_dir / "metrics.jsonl").read_text() == metrics


def test_a_crafted_checkpoint_falls_back_to_a_good_previous_one(finished_run, tmp_path, capsys, seeded_and_restored):
    run_dir = copy_of(finished_run, tmp_path, finished=False)
    latest = run_dir / "checkpoint.pt"
    torch.save(torch.load(latest, weights_only=True) | {"epoch": 10**6}, latest)
    capsys.readouterr()
    assert resume(run_dir) == 0
    out = capsys.readouterr().out
    assert f'warning: {latest} does not fit the run: "epoch" is 1000000' in out and "at epoch 2" in out
    assert [row["epoch"] for row in run_record.read_metrics(run_dir)] == [0, 1]
    assert run_record.read_run(run_dir, setting_definitions()).summary["last10_epochs"] == 2


def test_a_checkpoint_whose_rows_are_not_those_of_metrics_jsonl_is_refused(finished_run, tmp_path, capsys,
                                                                          seeded_and_restored):
    run_dir = copy_of(finished_run, tmp_path, finished=False)
    rows = run_record.read_metrics(run_dir)
    rows[0]["test"]["miou"] = 0.5
    run_record.write_metrics(run_dir, rows)
    capsys.readouterr()
    assert resume(run_dir) == 2
    err = capsys.readouterr().err
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        assert f"{run_dir / name} does not fit the run: \"rows\" are not the first" in err


def test_a_folder_named_checkpoint_pt_is_refused_before_any_epoch(finished_run, tmp_path, capsys, seeded_and_restored):
    run_dir = copy_of(finished_run, tmp_path, finished=False)
    (run_dir / "checkpoint.pt").unlink()
    (run_dir / "checkpoint.pt").mkdir()
    capsys.readouterr()
    assert resume(run_dir, "--epochs", "3") == 2
    err = capsys.readouterr().err
    assert f"{run_dir / 'checkpoint.pt'} is no file (a folder?)" in err
    assert len(run_record.read_metrics(run_dir)) == TWO_EPOCHS  # no epoch trained


def test_a_checkpoint_that_would_run_code_is_refused_in_whole_words(finished_run, tmp_path, capsys,
                                                                    seeded_and_restored):
    run_dir = copy_of(finished_run, tmp_path, finished=False)
    torch.save({"epoch": 1, "payload": RunsCode()}, run_dir / "checkpoint.pt")
    (run_dir / "checkpoint.prev.pt").unlink()
    capsys.readouterr()
    assert resume(run_dir) == 2
    captured = capsys.readouterr()
    assert "this ran" not in captured.out
    assert (f"{run_dir / 'checkpoint.pt'} is refused: it names print, where a checkpoint holds only tensors and "
            f"plain data; loading it could run code, so it is not loaded; no usable checkpoint left" in captured.err)


def test_fewer_epochs_than_the_checkpoint_are_refused(finished_run, tmp_path, capsys, seeded_and_restored):
    run_dir = copy_of(finished_run, tmp_path, finished=False)
    capsys.readouterr()
    assert resume(run_dir, "--epochs", "1") == 2
    assert "its checkpoint has 2 epochs done already; give --epochs 2 or more" in capsys.readouterr().err
    assert not (run_dir / "summary.json").exists()


def edit_summary(run_dir, **last10):
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["last10"] |= last10
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_extending_a_run_whose_summary_was_edited_is_refused(finished_run, tmp_path, capsys, seeded_and_restored):
    run_dir = copy_of(finished_run, tmp_path)
    miou = run_record.read_metrics(run_dir)
    edit_summary(run_dir, miou=0.5)
    capsys.readouterr()
    assert resume(run_dir, "--epochs", "3") == 2
    recomputed = summarize(miou, None, None)["last10"]["miou"]
    assert (f"--resume: {run_dir}: inconsistent: summary.json does not match metrics.jsonl: last10.miou 0.5 vs "
            f"{recomputed!r}; refusing to extend it") in capsys.readouterr().err
    assert len(run_record.read_metrics(run_dir)) == TWO_EPOCHS


def drop_last_epoch(run_dir):
    """Fewer rows than config.json's epochs, with a summary.json that matches them."""
    rows = run_record.read_metrics(run_dir)[:-1]
    run_record.write_metrics(run_dir, rows)
    run_record.write_json(run_dir / "summary.json", summarize(rows, None, None))


def test_a_finished_run_with_fewer_rows_than_its_epochs_is_inconsistent(tmp_path):
    run_dir = make_run(tmp_path, "short", {"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.02, "rel_err": 0.3}, epochs=5)
    drop_last_epoch(run_dir)
    with pytest.raises(run_record.InconsistentRunFolder,
                       match="inconsistent: metrics.jsonl holds 4 epochs, config.json's settings.epochs is 5"):
        run_record.read_run(run_dir, setting_definitions())


MEANS = {"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.02, "rel_err": 0.3}


def test_the_aggregation_names_and_leaves_out_inconsistent_runs(tmp_path):
    sweep = tmp_path / "runs" / "demo"
    for seed in range(3):
        make_run(sweep, f"adam-ew-s{seed}", MEANS, seed=seed)
    edit_summary(sweep / "adam-ew-s1", miou=0.9)
    drop_last_epoch(sweep / "adam-ew-s2")
    make_run(sweep, "adam-ew-s3", MEANS, seed=3)
    (sweep / "adam-ew-s3" / "summary.json").write_text('{"final": ')
    paths = aggregate(sweep, tmp_path / "results")
    with open(paths["csv"]) as f:
        header, row = f.read().splitlines()[:2]
    assert dict(zip(header.split(","), row.split(",")))["seeds"] == "0"
    md = paths["md"].read_text()
    assert "## Not averaged" in md
    assert (f"| adam-ew-s1 | inconsistent | 12 | `{sweep / 'adam-ew-s1'}: inconsistent: summary.json does not match "
            f"metrics.jsonl: last10.miou 0.9 vs 0.5` |") in md
    assert "| adam-ew-s2 | inconsistent | 11 |" in md and "metrics.jsonl holds 11 epochs" in md
    assert "| adam-ew-s3 | inconsistent | 12 |" in md and "metrics.jsonl or summary.json is unreadable" in md


def test_a_baseline_refuses_an_inconsistent_run(tmp_path, capsys):
    dirs = single_task_runs(tmp_path / "runs")
    edit_summary(dirs[0], miou=0.9)
    assert baseline_main([str(d) for d in dirs] + ["--out", str(tmp_path / "baseline.json")]) == 2
    assert f"{dirs[0]}: inconsistent: summary.json does not match metrics.jsonl: last10.miou 0.9 vs 0.6" \
        in capsys.readouterr().err


def test_status_shows_an_inconsistent_run_as_failed_with_the_reason(tmp_path):
    sweep = tmp_path / "s"
    names = ["good", "edited", "short"]
    plan.write_plan(sweep, [plan.PlannedRun(name, ()) for name in names], "local")
    for seed, name in enumerate(names):
        make_run(sweep, name, MEANS, seed=seed)
    edit_summary(sweep / "edited", miou=0.9)
    drop_last_epoch(sweep / "short")
    lines = status.report(sweep)
    assert lines[0].endswith("3 runs: 1 finished, 0 running, 2 failed, 0 pending")
    by_run = {line.split()[0]: line for line in lines[2:]}
    assert by_run["good"].split()[1:3] == ["finished", "12/12"]
    assert by_run["edited"].split()[1:3] == ["failed", "12/12"]
    assert by_run["edited"].endswith("inconsistent: summary.json does not match metrics.jsonl: last10.miou 0.9 vs 0.5")
    assert by_run["short"].endswith("inconsistent: metrics.jsonl holds 11 epochs, config.json's settings.epochs is 12")
