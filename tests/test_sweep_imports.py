"""The sweeps need no torch: planning a sweep and its command line know the tasks by name only
(the lazy registry of tasks/__init__.py), so `python -m sweeps --help` answers at once."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def modules_after(code):
    """The top-level packages a fresh interpreter has loaded after running `code` in the repository."""
    wrapper = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", wrapper], cwd=REPO, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split("\n")[-2].split())


@pytest.mark.parametrize("code", [
    "import sweeps.cli",
    "from sweeps import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
    "from sweeps import plan\nplan.build_plan(['adam'], single_task=True, tasks=['depth', 'instance'])",
    "from sweeps import cli\nassert cli.main(['--status', '--sweep', 's', '--runs', RUNS]) == 0",
    "from sweeps import cli\ntry:\n    cli.main(['reproduce', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
    "from sweeps import cli\nassert cli.main(['status', '--sweep', 's', '--runs', RUNS]) == 0",
    # --status of a recipe's sweep (here none: exit 2): the recipe is read without its flags' check
    "from sweeps import cli\nassert cli.main(['reproduce', 'nash_mtl', '--status', '--runs', RUNS]) == 2",
    "from sweeps import cli\ntry:\n    cli.main(['tune', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
    # --status of a study (here none: exit 2) reads study.json alone, without optuna or torch
    "from sweeps import cli\nassert cli.main(['tune', '--status', '--sweep', 's', '--runs', RUNS]) == 2",
    "from sweeps import cli\ntry:\n    cli.main(['compare', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
    # --status of a comparison: its plan's runs, its studies' study.json, its report, from the files alone
    "from sweeps import cli\nassert cli.main(['compare', '--status', '--sweep', 's', '--runs', RUNS]) == 0",
])
def test_the_sweep_command_line_plan_and_status_import_no_torch(code, tmp_path):
    """--status over a sweep folder whose run has a config.json and a metrics row."""
    (tmp_path / "s" / "adam-ew-s0").mkdir(parents=True)
    (tmp_path / "s" / "plan.json").write_text(json.dumps({"runs": [{"name": "adam-ew-s0", "flags": []}]}))
    (tmp_path / "s" / "adam-ew-s0" / "config.json").write_text(json.dumps({"settings": {"epochs": 2}}))
    (tmp_path / "s" / "adam-ew-s0" / "metrics.jsonl").write_text(json.dumps({"test": {"miou": 0.5}}) + "\n")
    loaded = modules_after(code.replace("RUNS", repr(str(tmp_path))))
    assert "tasks" in loaded and "torch" not in loaded
