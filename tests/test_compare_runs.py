"""scripts/compare_runs.py on hand-made metrics files: equal runs pass whatever their timings, a
1-ulp change in one nested value fails and is named, a run on one side only fails."""
import json
import math

import pytest

from scripts.compare_runs import main

ROWS = [
    {"epoch": 0, "seconds": 1.5, "train": {"loss_semantic": 1.25, "time_data": 0.25},
     "test": {"miou": 0.0612, "class_iou": {"sky": 0.5, "human": math.nan}, "delta_m": None}},
    {"epoch": 1, "seconds": 1.25, "train": {"loss_semantic": 1.0, "time_data": 0.5},
     "test": {"miou": 0.0588, "class_iou": {"sky": 0.25, "human": 0.0}, "delta_m": None}},
]
KEYS_PER_ROW = 6  # epoch, train/loss_semantic, test/miou, test/class_iou/sky, test/class_iou/human, test/delta_m


def write_run(root, name, rows):
    (root / name).mkdir(parents=True)
    (root / name / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def retimed(rows):
    """The rows of a run as a rerun writes them: other timings, the same values."""
    return [{**row, "seconds": row["seconds"] * 3, "train": {**row["train"], "time_data": 9.0}} for row in rows]


def table(output):
    """{run: [rows, keys compared, differing keys]} of compare_runs' Markdown table."""
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in output.splitlines()[2:-1]]
    return {run: rest for run, *rest in cells}


def test_equal_runs_pass_whatever_their_timings(tmp_path, capsys):
    write_run(tmp_path / "before", "k2-adam-ew", ROWS)
    write_run(tmp_path / "after", "k2-adam-ew", retimed(ROWS))
    assert main([str(tmp_path / "before"), str(tmp_path / "after")]) == 0
    output = capsys.readouterr().out
    assert table(output)["k2-adam-ew"] == ["2", str(2 * KEYS_PER_ROW), "none"]
    assert output.splitlines()[-1] == "all runs equal"


def test_one_ulp_in_a_nested_value_is_a_difference(tmp_path, capsys):
    changed = json.loads(json.dumps(ROWS))
    changed[1]["test"]["class_iou"]["sky"] = math.nextafter(0.25, 1.0)
    write_run(tmp_path / "before", "k3-famo", ROWS)
    write_run(tmp_path / "after", "k3-famo", changed)
    assert main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    output = capsys.readouterr().out
    assert table(output)["k3-famo"] == ["2", str(2 * KEYS_PER_ROW), "test/class_iou/sky"]
    assert output.splitlines()[-1] == "runs differ"


def test_an_integer_that_became_a_float_is_a_difference(tmp_path, capsys):
    changed = [{**ROWS[0], "epoch": 0.0}, ROWS[1]]
    write_run(tmp_path / "before", "run", ROWS)
    write_run(tmp_path / "after", "run", changed)
    assert main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    assert table(capsys.readouterr().out)["run"][-1] == "epoch"


def test_a_run_on_one_side_only_fails(tmp_path, capsys):
    write_run(tmp_path / "before", "k2-adam-ew", ROWS)
    write_run(tmp_path / "after", "k2-adam-ew", ROWS)
    write_run(tmp_path / "before", "torchrun2", ROWS)
    assert main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    lines = table(capsys.readouterr().out)
    assert lines["k2-adam-ew"][-1] == "none"
    assert lines["torchrun2"] == ["-", "-", f"missing in {tmp_path / 'after'}"]


def test_a_missing_row_differs_in_all_its_keys(tmp_path, capsys):
    write_run(tmp_path / "before", "run", ROWS)
    write_run(tmp_path / "after", "run", ROWS[:1])
    assert main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    assert table(capsys.readouterr().out)["run"] == [
        "2 / 1", str(2 * KEYS_PER_ROW), "epoch, test/class_iou/human, test/class_iou/sky, test/delta_m (+2 more)"]


def test_bad_input_names_the_folder_or_the_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "nowhere"), str(tmp_path)])
    assert stop.value.code == 2
    assert f"BEFORE_DIR {tmp_path / 'nowhere'}: not a folder" in capsys.readouterr().err
    write_run(tmp_path / "before", "run", ROWS)
    write_run(tmp_path / "after", "run", ROWS)
    (tmp_path / "after" / "run" / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": \n')
    with pytest.raises(SystemExit):
        main([str(tmp_path / "before"), str(tmp_path / "after")])
    assert f"{tmp_path / 'after' / 'run' / 'metrics.jsonl'}, line 2: not a JSON object" in capsys.readouterr().err
