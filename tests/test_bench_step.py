"""scripts/bench_step.py at a tiny size: the table and the JSON are complete and
finite. No timing is asserted (the machine is shared)."""
import json
import math

import pytest

from scripts import bench_step

# the script's main() seeds the global RNGs
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded_and_restored")]

TINY = ["--width-mult", "0.125", "--image-size", "32x64", "--warmup", "1", "--steps", "2", "--device", "cpu"]
METHODS = ["adam", "adam_with_adatask"]
SPREAD_KEYS = {"median", "min", "max"}


def table_rows(text):
    """The markdown table rows below the header and separator, as lists of cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]], lines[0]


def test_bench_step_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    info = bench_step.main(TINY + ["--methods", *METHODS, "--json", str(out)])
    rows, header = table_rows(capsys.readouterr().out)

    assert [row[0] for row in rows] == METHODS
    assert all(len(row) == len(header.strip("|").split("|")) == 8 for row in rows)
    assert json.loads(out.read_text())["methods"].keys() == set(METHODS)
    for method in METHODS:
        row = info["methods"][method]
        for phase in ("forward", "backward", "step", "total"):
            assert set(row[phase]) == SPREAD_KEYS
            assert all(math.isfinite(v) and v > 0 for v in row[phase].values())
            assert row[phase]["min"] <= row[phase]["median"] <= row[phase]["max"]
        assert math.isfinite(row["ratio_to_adam"]) and row["ratio_to_adam"] > 0
        assert math.isfinite(row["peak_mib"]) and row["peak_mib"] > 0
    assert info["methods"]["adam"]["ratio_to_adam"] == 1.0
    assert info["memory_bound_mib"]["total"] > 0


def test_compare_backward_tiny(capsys):
    info = bench_step.main(TINY + ["--compare-backward"])
    rows, _ = table_rows(capsys.readouterr().out)

    assert len(rows) == len(info["seconds"]) >= 2
    assert all(math.isfinite(s["median"]) and s["median"] > 0 for s in info["seconds"].values())
    if info["vmapped"]["works"]:
        assert info["vmapped"]["max_rel_diff"] < 1e-4


def test_weighting_cost_tiny(capsys):
    weightings = ["ew", "famo", "pcgrad", "hydalearn"]
    info = bench_step.main(TINY + ["--weighting-cost", "--weightings", *weightings,
                                      "--step-weightings", "ew", "pcgrad"])
    assert list(info["costs"]) == ["one per-task backward pass", "Gram matrix, float32 products (before)",
                                   "Gram matrix, float64 accumulation (now)"] + weightings
    assert list(info["steps"]) == ["adam + ew", "adam + pcgrad", "adam_with_adatask + ew", "adam_with_adatask + pcgrad"]
    assert all(math.isfinite(s["median"]) and s["median"] >= 0 for s in {**info["costs"], **info["steps"]}.values())
    assert "| pcgrad |" in capsys.readouterr().out


def test_bench_step_times_the_engine_for_three_tasks(capsys):
    """The engine of training at K = 3: the phases split each step's time exactly."""
    info = bench_step.main(TINY + ["--methods", *METHODS, "--tasks", "semantic", "instance", "depth", "--no-memory"])
    out = capsys.readouterr().out
    assert "tasks semantic + instance + depth" in out
    for method in METHODS:
        raw = info["raw_seconds"][method]
        for forward, backward, step, total in zip(raw["forward"], raw["backward"], raw["step"], raw["total"]):
            assert min(forward, backward, step) > 0 and math.isclose(forward + backward + step, total)
