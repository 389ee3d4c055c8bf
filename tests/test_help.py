"""`main_cityscapes.py --help`: grouped, each default shown once, and cheap: building the parser
imports no solver (torchjd, cvxpy, scipy) nor TensorBoard. Nothing here is timed (the machine
is shared); scripts/bench_help.py measures it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GROUPS = {"data": "--dataset", "model": "--arch", "optimisation": "--lr", "methods": "--cagrad-c",
          "run folder and logging": "--diagnostics", "performance": "--compile"}
HEAVY = ("torchjd", "cvxpy", "scipy", "torch.utils.tensorboard")


def run_python(*args):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # the 80-column default
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def help_text():
    return run_python("main_cityscapes.py", "--help")


def entries(text):
    """{group title: {first flag: its whole entry on one line}}; wrapped lines joined."""
    groups, group, entry = {}, None, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            group, entry = line[:-1], None
            groups[group] = {}
        elif group and re.match(r"  -{1,2}[a-z][\w-]*[ ,]", line + " "):
            entry = line.split()[0].rstrip(",")
            groups[group][entry] = line.strip()
        elif group and entry and line.startswith("   "):
            groups[group][entry] += " " + line.strip()
    return groups


def test_help_is_grouped_with_a_short_usage_line(help_text):
    assert help_text.splitlines()[0] == "usage: main_cityscapes.py [options]"
    groups = entries(help_text)
    for title, flag in GROUPS.items():
        assert flag in groups[title], (title, flag)
    assert "--weighting" in groups["methods"] and "--diagnostics-every" in groups["run folder and logging"]


def test_help_shows_each_default_once(help_text):
    assert "(default: None)" not in help_text
    flags = {flag: text for group in entries(help_text).values() for flag, text in group.items()}
    for flag, text in flags.items():
        assert len(re.findall(r"\(default\b", text)) <= 1, text
    for flag, default in (("--epochs", "200"), ("--batch-size", "8"), ("--lr", "0.0001"), ("--seed", "42"),
                          ("--weighting", "ew"), ("--hydalearn-recompute-base", "False")):
        assert f"(default: {default})" in flags[flag], flags[flag]
    for switch in ("--diagnostics", "--track-au", "--amp", "--compile"):  # off unless given: no default shown
        assert "default" not in flags[switch], flags[switch]


def test_building_the_parser_imports_no_solver_nor_tensorboard():
    code = ("import sys, main_cityscapes; from experiment.flags import build_parser; build_parser(); "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert run_python("-c", code).strip() == ""
