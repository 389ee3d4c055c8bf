"""docs/design.md's promise, tried as a researcher would: a new weighting method, optimizer
base, task or dataset is one file plus one registry line. Each toy (tests/extensions/) goes
into a scratch copy of the repository; `git diff --numstat` must show that file and one added
line, nothing else. Then, as subprocesses in the copy: --help lists the toy, a sweep trains
with it and aggregates it into the table, --status lists its runs, the generated tables name
it, and a run folder made before the toy was added still resumes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

REPO = Path(__file__).resolve().parent.parent
TOYS = Path(__file__).resolve().parent / "extensions"
TINY = ["--epochs", "1", "--batch-size", "4", "--width-mult", "0.125", "--num-workers", "0", "--device", "cpu",
        "--threads", "1"]


class Scratch:
    """A copy of the repository's files as one commit, where commands run as a user would."""

    def __init__(self, root, data):
        self.root, self.data = root, data
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                check=True, capture_output=True, text=True).stdout.split("\0")
        for name in filter(None, listed):
            if (REPO / name).is_file():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, root / name)
        for command in (["init", "-q"], ["add", "-A"],
                        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "before the toy"]):
            self.git(*command)

    def git(self, *args):
        return subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True, text=True).stdout

    def run(self, *args, expect=0):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
        done = subprocess.run([sys.executable, *args], check=False, cwd=self.root, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    def train(self, name, *flags):
        return self.run("main_cityscapes.py", "--data-path", str(self.data), *TINY, "--out", "runs", "--name", name,
                        *flags)

    def add(self, toy, destination, registry, after, line):
        """Copy the toy file in and add `line` to `registry` after the line `after`; then the
        diff must be exactly that file and that line."""
        shutil.copy(TOYS / toy, self.root / destination)
        path = self.root / registry
        text = path.read_text()
        assert text.count(after + "\n") == 1, f"{registry}: the anchor {after!r} is gone"
        path.write_text(text.replace(after + "\n", after + "\n" + line + "\n"))
        self.git("add", "-N", destination)
        lines = sorted(row.split("\t") for row in self.git("diff", "--numstat").splitlines())
        toy_lines = str(len((TOYS / toy).read_text().splitlines()))
        assert lines == sorted([[toy_lines, "0", destination], ["1", "0", registry]])

    def sweep(self, name, *options, flags=()):
        """A local sweep of one seed, its table, and its --status."""
        self.run("-m", "sweeps", "--sweep", name, "--runs", "runs", "--seeds", "0", *options, "--",
                 "--data-path", str(self.data), *TINY, *flags)
        table = (self.root / "runs" / name / "results" / f"{name}.md").read_text()
        status = self.run("-m", "sweeps", "--status", "--sweep", name, "--runs", "runs")
        return table, status


@pytest.fixture(scope="module")
def run_from_before(tmp_path_factory, tiny_synthcity):
    """A run folder the repository made before any toy was added, stopped after its checkpoint."""
    copy = Scratch(tmp_path_factory.mktemp("before") / "repo", tiny_synthcity)
    copy.train("before")
    (copy.root / "runs" / "before" / "summary.json").unlink()
    return copy.root / "runs" / "before"


@pytest.fixture
def scratch(tmp_path, tiny_synthcity, run_from_before):
    copy = Scratch(tmp_path / "repo", tiny_synthcity)
    shutil.copytree(run_from_before, copy.root / "runs" / "before")
    return copy


def resumes(copy):
    """The run folder from before the toy continues under the toy's code."""
    copy.run("main_cityscapes.py", "--resume", "runs/before", "--epochs", "2")
    assert len((copy.root / "runs" / "before" / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_weighting_method_is_one_file_and_one_line(scratch):
    scratch.add("fixed.py", "optim/weighting/fixed.py", "optim/weighting/__init__.py",
                '    "optim.weighting.ew:EqualWeighting",', '    "optim.weighting.fixed:FixedWeights",')
    assert "--fixed-values" in scratch.run("main_cityscapes.py", "--help")
    table, status = scratch.sweep("w", "--methods", "adam", "--weightings", "fixed", flags=["--fixed-values", "1,0.5"])
    assert "| adam | fixed (fixed_values=1,0.5) |" in table and "adam-fixed-s0" in status  # not its default
    config = json.loads((scratch.root / "runs" / "w" / "adam-fixed-s0" / "config.json").read_text())
    assert config["settings"]["fixed_values"] == "1,0.5"
    resumes(scratch)
    assert "| `fixed` |" in scratch.run("-c", "from optim.weighting import method_table; print(method_table())")


ADAMAX_EQUALS_TORCH = """
import torch
from optim import OPTIMIZERS
from optim.adamax import AdamaxWithAdaTask
torch.manual_seed(0)
ours, theirs = [torch.nn.Linear(4, 3).double() for _ in range(2)]
theirs.load_state_dict(ours.state_dict())
a = AdamaxWithAdaTask(ours.parameters(), num_tasks=1, lr=0.01)
b = torch.optim.Adamax(theirs.parameters(), lr=0.01)
for _ in range(20):
    x = torch.randn(8, 4, dtype=torch.float64)
    a.zero_grad()
    a.backward([ours(x).pow(2).sum()])  # the one task's loss
    a.step()
    b.zero_grad()
    theirs(x).pow(2).sum().backward()
    b.step()
print(max((p - q).abs().max().item() for p, q in zip(ours.parameters(), theirs.parameters())))
print(" ".join(OPTIMIZERS))
"""


def test_an_optimizer_base_is_one_file_and_one_line(scratch):
    scratch.add("adamax.py", "optim/adamax.py", "optim/__init__.py",
                '    "optim.adatask:AdagradWithAdaTask",', '    "optim.adamax:AdamaxWithAdaTask",')
    difference, methods = scratch.run("-c", ADAMAX_EQUALS_TORCH).split("\n")[:2]
    assert float(difference) == 0.0 and {"adamax", "adamax_with_adatask"} <= set(methods.split())
    assert "adamax_with_adatask" in scratch.run("main_cityscapes.py", "--help")
    # --track-au: plain Adamax is tracked through the new base's functional core
    table, status = scratch.sweep("o", "--methods", "adamax adamax_with_adatask", "--jobs", "2", flags=["--track-au"])
    assert "| adamax | ew |" in table and "| adamax_with_adatask | ew |" in table
    assert "adamax-ew-s0" in status and "adamax_with_adatask-ew-s0" in status
    assert (scratch.root / "runs" / "o" / "adamax-ew-s0" / "au.csv").read_text().count("\n") > 1
    resumes(scratch)
    assert "`adamax_with_adatask`" in scratch.run("-c", "from optim import method_list; print(method_list())")


def test_a_task_is_one_file_and_one_line(scratch):
    scratch.add("edge.py", "tasks/edge.py", "tasks/__init__.py",
                '    TaskEntry("depth", (DEPTH_DIR,), ("abs_err", "rel_err"), "tasks.depth:DepthTask", ("abs_err", "rel_err")),',
                '    TaskEntry("edge", (label_dir(7),), ("edge_err",), "tasks.edge:EdgeTask", ("edge_err",)),')
    assert "edge" in scratch.run("main_cityscapes.py", "--help") and "edge" in scratch.run("-m", "sweeps", "--help")
    table, status = scratch.sweep("t", "--methods", "adam", "--tasks", "semantic edge")
    assert "EdgeErr" in table and "| adam | ew |" in table and "adam-ew-s0" in status
    trivial = scratch.run("-m", "evaluation.trivial", "--data-path", str(scratch.data), "--tasks", "edge")
    assert "no edge anywhere" in trivial and "edge_err" in trivial
    resumes(scratch)


def test_a_dataset_is_one_file_and_one_line(scratch):
    scratch.add("stripes.py", "data/datasets/stripes.py", "data/datasets/__init__.py",
                '    "data.datasets.synthcity:SynthCity",', '    "data.datasets.stripes:Stripes",')
    assert "stripes" in scratch.run("main_cityscapes.py", "--help")
    size = ["--dataset", "stripes", "--image-size", "32x64", "--synthcity-train", "8", "--synthcity-val", "4"]
    scratch.run("-m", "sweeps", "--sweep", "d", "--runs", "runs", "--seeds", "0", "--methods", "adam", "--",
                *TINY, *size)
    table = (scratch.root / "runs" / "d" / "results" / "d.md").read_text()
    status = scratch.run("-m", "sweeps", "--status", "--sweep", "d", "--runs", "runs")
    config = json.loads((scratch.root / "runs" / "d" / "adam-ew-s0" / "config.json").read_text())
    assert config["data"]["name"] == "stripes" and config["data"]["identity"]["kind"] == "stripes"
    assert "| adam | ew |" in table and "Stripes are a toy" in table and "adam-ew-s0" in status
    root = next((scratch.root / "dataset" / "stripes").iterdir())
    assert "OK" in scratch.run("-m", "data.check", "--data-path", str(root))
    resumes(scratch)
