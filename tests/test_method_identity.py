"""A method's own settings (its options and head_grads) are its identity: a sweep over every
weighting at its defaults aggregates into one table, and runs of one method that differ in
them are rows of their own, labelled by what departs from the method's defaults
(docs/design.md, "Settings and their legacy values")."""
import json
import shutil

import global_state
import pytest

import main_cityscapes
from evaluation.aggregate.__main__ import main as aggregate
from experiment.flags import parse_args, settings_of
from optim.weighting import WEIGHTINGS

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

FLAGS = ["--epochs", "1", "--batch-size", "4", "--width-mult", "0.125", "--num-workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def finished_run(tiny_synthcity, tmp_path_factory):
    out = tmp_path_factory.mktemp("identity")
    with global_state.seeded_and_restored():  # the run seeds the global RNGs
        assert main_cityscapes.main(["--data-path", str(tiny_synthcity), *FLAGS, "--out", str(out), "--name", "run",
                                     "--method", "adam"]) == 0
    return out / "run"


def as_if_made_with(run, sweep, name, *flags):
    """A copy of `run` whose config.json is the one main_cityscapes.py writes for `flags`."""
    copy = sweep / name
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    args = parse_args(["--data-path", config["settings"]["data_path"], *FLAGS, "--method", "adam", *flags])
    config["settings"] = settings_of(args)
    config["weighting"]["name"] = args.weighting
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def table_lines(sweep, capsys):
    assert aggregate([str(sweep)]) == 0, capsys.readouterr().err
    markdown = (sweep / "results" / f"{sweep.name}.md").read_text()
    means = markdown.split("| Method |", 1)[1].split("\n\n", 1)[0]  # the first table: the means
    return [line for line in means.splitlines() if line.startswith("| adam |")]


def test_every_weighting_at_its_defaults_aggregates_into_one_table(finished_run, tmp_path, capsys):
    sweep = tmp_path / "all"
    for weighting in WEIGHTINGS:
        as_if_made_with(finished_run, sweep, f"adam-{weighting}-s0", "--weighting", weighting)
    rows = table_lines(sweep, capsys)
    assert sorted(line.split("|")[2].strip() for line in rows) == sorted(WEIGHTINGS)  # no label departs


def test_a_departure_from_the_method_default_is_a_row_of_its_own(finished_run, tmp_path, capsys):
    sweep = tmp_path / "departs"
    as_if_made_with(finished_run, sweep, "adam-pcgrad-s0", "--weighting", "pcgrad")
    as_if_made_with(finished_run, sweep, "adam-pcgrad-weighted-s0", "--weighting", "pcgrad", "--head-grads",
                    "weighted", "--seed", "1")
    as_if_made_with(finished_run, sweep, "adam-nash_mtl-s0", "--weighting", "nash_mtl")
    as_if_made_with(finished_run, sweep, "adam-cagrad-s0", "--weighting", "cagrad", "--cagrad-c", "0.2")
    weightings = [line.split("|")[2].strip() for line in table_lines(sweep, capsys)]
    assert sorted(weightings) == ["cagrad (cagrad_c=0.2)", "nash_mtl", "pcgrad", "pcgrad (head_grads=weighted)"]


def test_an_old_config_with_every_methods_options_joins_a_new_one(finished_run, tmp_path, capsys):
    """Schema 5 recorded every method's options; the row is the same as a schema-6 run's."""
    sweep = tmp_path / "mixed"
    as_if_made_with(finished_run, sweep, "adam-pcgrad-s0", "--weighting", "pcgrad")
    old = as_if_made_with(finished_run, sweep, "adam-pcgrad-s1", "--weighting", "pcgrad", "--seed", "1")
    config = json.loads((old / "config.json").read_text())
    parsed = vars(parse_args(["--weighting", "pcgrad"]))
    every_option = {key: parsed[key] for key in parsed if key.startswith(("nash_mtl_", "cagrad_", "mgda_"))}
    config["schema_version"], config["settings"] = 5, {**config["settings"], **every_option}
    (old / "config.json").write_text(json.dumps(config))
    rows = table_lines(sweep, capsys)
    assert len(rows) == 1 and rows[0].split("|")[2].strip() == "pcgrad" and rows[0].split("|")[3].strip() == "2"
