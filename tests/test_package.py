"""pyproject.toml: the distribution holds optim and optim.weighting only (built offline: no
build isolation, no index), and after `pip install -e . -c requirements.txt` into a fresh virtual
environment both library examples (the README's and docs/library.md's) run outside the
repository without a warning. The builds leave nothing in the checkout."""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
LIBRARY_DOC = REPO / "docs" / "library.md"
# what an in-tree build (pip wheel) writes into the checkout; .gitignore lists them
BUILD_LEFTOVERS = ("build", "adatask_mtl.egg-info")
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
# the offline builds: none of this machine's PIP_* settings, no cache
OFFLINE_PIP_ENV = {**PIP_ENV, "PIP_NO_CACHE_DIR": "1"}
HARNESS = """
import importlib, importlib.util, json, pathlib, sys
example = pathlib.Path("readme_example.py").read_text()
exec(compile(example, "readme_example.py", "exec"), {"__name__": "__main__"})
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "optim")
for module in ("optim.weighting", "optim.weighting.cli", "optim.dominance", "optim.multitask_step"):
    importlib.import_module(module)
print(json.dumps({"optim": importlib.import_module("optim").__file__, "loaded_by_example": loaded,
                  "repo_packages": [m for m in ("data", "models", "evaluation", "sweeps", "main_cityscapes")
                                    if importlib.util.find_spec(m)]}))
"""


def readme_example():
    """The first python block of the README's section "Use AdaTask in your own model", verbatim."""
    section = README.read_text().split("## Use AdaTask in your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def library_doc_example():
    """docs/library.md's AdaTask-with-PCGrad example and the output shown under it, verbatim."""
    section = LIBRARY_DOC.read_text().split("## AdaTask with a gradient method", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    shown = re.search(r"```text\n(.*?)```", section, re.DOTALL).group(1)
    return code, shown.splitlines()


def pinned(name):
    line = next(line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith(f"{name}=="))
    return line.split("==")[1].strip()


def run(command, cwd, machine_pip=False):
    """command in cwd, without PYTHONPATH. pip: with this machine's PIP_* settings and its cache
    (an install as a user's) when machine_pip, else with none of them."""
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and (machine_pip or not k.startswith("PIP_"))}
    done = subprocess.run([str(c) for c in command], cwd=cwd,
                          env={**clean, **(PIP_ENV if machine_pip else OFFLINE_PIP_ENV)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture
def clean_checkout():
    """Removes what a build writes into the checkout, unless it was there before."""
    fresh = [REPO / name for name in BUILD_LEFTOVERS if not (REPO / name).exists()]
    yield
    for path in fresh:
        shutil.rmtree(path, ignore_errors=True)


def test_wheel_holds_optim_only_and_requires_torch(tmp_path, clean_checkout):
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path,
         REPO], cwd=tmp_path)
    (wheel,) = tmp_path.glob("adatask_mtl-0.1.0-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    code = [n for n in names if not n.startswith("adatask_mtl-0.1.0.dist-info/")]
    assert {str(Path(n).parent) for n in code} == {"optim", "optim/weighting"}, code
    assert {Path(n).name for n in code} >= {"__init__.py", "adatask.py", "task_gradients.py", "upgrad.py"}
    assert all(n.endswith(".py") for n in code), code
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read("adatask_mtl-0.1.0.dist-info/METADATA").decode())
    requires = metadata.get_all("Requires-Dist")
    assert metadata["Requires-Python"] == ">=3.11" and metadata.get_all("Provides-Extra") == ["weighting"]
    assert [r for r in requires if "extra" not in r] == ["torch>=2.13", "numpy>=2"]
    (torchjd,) = [r for r in requires if r.startswith("torchjd")]
    assert f"=={pinned('torchjd')}" in torchjd and 'extra == "weighting"' in torchjd


NUMBER = re.compile(r"-?\d+\.\d+")


def numbers(line):
    return [float(n) for n in NUMBER.findall(line)]


@pytest.mark.slow
def test_both_library_examples_run_without_a_warning_outside_the_repository_after_a_fresh_install(
        tmp_path, clean_checkout):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    # docs/library.md's command: the pins keep pip from fetching the newest (CUDA) torch
    run([python, "-m", "pip", "install", "-e", REPO, "-c", REPO / "requirements.txt"], cwd=tmp_path,
        machine_pip=True)
    versions = "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in ('torch', 'numpy')}))"
    versions = json.loads(run([python, "-c", versions], cwd=tmp_path).stdout)
    assert versions["torch"].split("+")[0] == pinned("torch") and versions["numpy"] == pinned("numpy")

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "readme_example.py").write_text(readme_example())
    done = run([python, "-W", "error", "-c", HARNESS], cwd=work)
    assert done.stderr == ""  # no warning of any kind: torch's "Failed to initialize NumPy" was one
    printed, report = done.stdout.splitlines()
    assert re.fullmatch(r"after 20 steps: seg loss \d\.\d{4}, depth loss \d\.\d{4}", printed), printed
    report = json.loads(report)
    assert report["optim"] == str(REPO / "optim" / "__init__.py")  # editable: the checkout itself
    # the example's import needs torch alone, and the training code is not installed
    assert report["loaded_by_example"] == ["optim", "optim.adatask", "optim.sgd_core", "optim.task_gradients"]
    assert report["repo_packages"] == []

    code, shown = library_doc_example()
    (work / "library_example.py").write_text(code)
    done = run([python, "-W", "error", "library_example.py"], cwd=work)
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    # the text as shown, and its numbers within 2 % (another CPU's float32 kernels change the last digits)
    assert [NUMBER.sub("#", line) for line in lines] == [NUMBER.sub("#", line) for line in shown]
    for line, expected in zip(lines, shown):
        assert numbers(line) == pytest.approx(numbers(expected), rel=0.02), (line, expected)
    seg, depth = zip(*(numbers(line) for line in lines))
    assert list(seg) == sorted(seg, reverse=True) and list(depth) == sorted(depth, reverse=True)  # it trains
