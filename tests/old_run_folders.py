"""Run folders written by older versions of main_cityscapes.py (tests/fixtures/run_folders/; its
README.md says which commit and command made each), copied so that today's code can use them.

Each fixture's config.json names its data by an absolute data.root on the machine that made it.
A resume opens config.json's data.root and checks the data's identity there against the one its
config.json and checkpoint record (a --data-path on resume is refused as a changed setting), so
a copy gets a copy of the data the fixture trained on (kept beside the fixtures) and its
config.json's data.root pointed at it; the checkpoint is left as the old version wrote it.
"""
import json
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "run_folders"
# one folder per config.json schema version, two for version 3 (README.md there)
SCHEMAS = ("schema1", "schema2", "schema3-before-head-grads", "schema3", "schema4", "schema5")
FINISHED = "adam_with_adatask-pcgrad-s0"  # 2 of 2 epochs: summary.json
UNFINISHED = "adam-nash_mtl-s0"  # stopped by SIGTERM in epoch 2 of 2: a checkpoint of epoch 1
# the SynthCity releases the fixtures trained on, as their generators wrote them (make_fixtures.sh
# there keeps them): versions that today's data.synthcity no longer writes, whose images depend on the CPU
KEPT_DATA = FIXTURES / "data"


def generator_of(config):
    """The SynthCity parameters (version, sizes, seed) of a run's data: its data identity's, or
    for schema 1, which records no identity, its data.synthcity."""
    data = config["data"]
    identity = data.get("identity")
    return identity["generator"] if identity is not None else data["synthcity"]


def data_name(generator):
    """The folder name data.synthcity.cached gives these parameters in their generator version."""
    g = generator
    return f"v{g['version']}-{g['height']}x{g['width']}-train{g['n_train']}-val{g['n_val']}-seed{g['seed']}"


def provide_data(generator, data_dir):
    """The SynthCity release of these parameters under data_dir, copied from KEPT_DATA once.
    ValueError naming the folder when it keeps no such release."""
    target = Path(data_dir) / data_name(generator)
    kept = KEPT_DATA / target.name
    if not kept.is_dir():
        raise ValueError(f"{kept}: no kept copy of SynthCity v{generator['version']} data; "
                         "tests/fixtures/run_folders/make_fixtures.sh keeps the data of the fixtures it makes")
    if not target.is_dir():
        shutil.copytree(kept, target)
    return target


def usable_copy(schema, run, dest, data_dir):
    """Copy fixture <schema>/<run> to dest/<run> with its data provided under data_dir and named
    by config.json's data.root; everything else as the old version wrote it. Returns the copy."""
    copy = Path(shutil.copytree(FIXTURES / schema / run, Path(dest) / run))
    path = copy / "config.json"
    config = json.loads(path.read_text())
    config["data"]["root"] = str(provide_data(generator_of(config), data_dir))
    path.write_text(json.dumps(config, indent=2) + "\n")
    return copy
