"""The sweeps need no torch: planning a sweep and its command line know the tasks by name only
(the lazy registry of tasks/__init__.py), so `python -m sweeps --help` answers at once."""
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
])
def test_the_sweep_command_line_and_plan_import_no_torch(code):
    loaded = modules_after(code)
    assert "tasks" in loaded and "torch" not in loaded
