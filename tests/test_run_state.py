"""runfolder/state.py: a run's state from its folder and the sweep's <name>.exit, on folders made
by hand; and runfolder/ imports the standard library alone."""
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runfolder import lease, state
from runfolder.files import CONFIG, EXIT_SUFFIX, LEASE, SUMMARY

REPO = Path(__file__).resolve().parent.parent


def make(sweep, name, *files, exit_status=None):
    (sweep / name).mkdir(parents=True)
    for file in files:
        (sweep / name / file).write_text("{}\n")
    if exit_status is not None:
        state.write_exit(sweep, name, exit_status)
    return sweep / name


def test_progress_from_the_files_alone(tmp_path):
    assert state.progress(tmp_path / "absent") == state.ABSENT
    assert state.progress(make(tmp_path, "created")) == state.CREATED
    assert state.progress(make(tmp_path, "started", CONFIG)) == state.STARTED
    assert state.progress(make(tmp_path, "finished", CONFIG, SUMMARY)) == state.FINISHED


def test_the_exit_file_is_written_whole_and_read_back(tmp_path):
    assert state.read_exit(tmp_path, "r") is None
    state.write_exit(tmp_path, "r", 143)
    assert (tmp_path / f"r{EXIT_SUFFIX}").read_text() == "143\n" and state.read_exit(tmp_path, "r") == 143
    (tmp_path / "bad.exit").write_text("killed\n")
    with pytest.raises(state.ExitFileError, match=f"{tmp_path / 'bad.exit'}: expected an exit status"):
        state.read_exit(tmp_path, "bad")


@pytest.mark.parametrize("files, exit_status, expected", [
    ((CONFIG, SUMMARY), 0, (state.FINISHED, state.FINISHED)),
    ((CONFIG, SUMMARY), None, (state.FINISHED, state.FINISHED)),  # finished elsewhere than by the sweep
    ((CONFIG,), 3, (state.FAILED, state.STARTED)),
    ((), 2, (state.FAILED, state.CREATED)),  # failed before its first write
    ((CONFIG,), None, (state.INTERRUPTED, state.STARTED)),  # stopped (by the sweep, a kill): resumes
    ((CONFIG,), 0, (state.INTERRUPTED, state.STARTED)),
    ((), None, (state.PENDING, state.CREATED)),
])
def test_each_state(tmp_path, files, exit_status, expected):
    make(tmp_path, "r", *files, exit_status=exit_status)
    run = state.run_state(tmp_path, "r")
    assert (run.state, run.progress, run.exit_status, run.owner) == (*expected, exit_status, None)


def test_a_run_that_never_made_its_folder(tmp_path):
    assert state.run_state(tmp_path, "r") == state.RunState(state.PENDING, state.ABSENT, None, None)
    state.write_exit(tmp_path, "r", 2)
    assert state.run_state(tmp_path, "r") == state.RunState(state.FAILED, state.ABSENT, 2, None)


def test_a_live_owner_makes_it_running_whatever_its_files_say(tmp_path):
    run_dir = make(tmp_path, "r", CONFIG, exit_status=3)  # a rerun outside the sweep, say
    asked = ("import json, sys; from runfolder import state; run = state.run_state(sys.argv[1], 'r'); "
             "print(json.dumps([run.state, run.progress, run.exit_status, run.owner['pid']]))")
    with lease.acquire(run_dir) as ownership:  # asked from another process: this one's own lease is no owner
        done = subprocess.run([sys.executable, "-c", asked, str(tmp_path)], cwd=REPO, capture_output=True,
                              text=True, check=True)
        assert json.loads(done.stdout) == [state.RUNNING, state.STARTED, 3, ownership.lease["pid"]]
    assert state.run_state(tmp_path, "r").state == state.FAILED


def test_a_lease_not_renewed_for_the_timeout_is_no_owner(tmp_path):
    run_dir = make(tmp_path, "r", CONFIG)
    (run_dir / LEASE).write_text(json.dumps({"host": "node-b", "node": "x", "pid": 4242,
                                             "renewed": time.time() - 2 * lease.DEFAULT_TIMEOUT}))
    assert state.run_state(tmp_path, "r").state == state.INTERRUPTED
    (run_dir / LEASE).write_text(json.dumps({"host": "node-b", "node": "x", "pid": 4242, "renewed": time.time()}))
    assert state.run_state(tmp_path, "r").owner["host"] == "node-b"


def test_runfolder_imports_the_standard_library_alone():
    """The bottom layer: what it imports is stdlib or runfolder itself, anywhere in a module."""
    found = set()
    for path in (REPO / "runfolder").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found.add(node.module.split(".")[0])
    assert sorted(found - sys.stdlib_module_names - {"runfolder"}) == []


def test_the_runner_and_the_status_load_no_torch():
    code = "import sys, sweeps.runner, sweeps.status; assert 'torch' not in sys.modules, 'torch'"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
