"""pyproject.toml: the distribution holds optim and optim.weighting only, and after
`pip install -e .` the README's "Use AdaTask in your own model" example runs outside the
repository. Offline: no build isolation, no index; the builds leave nothing in the checkout."""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# what an in-tree build (pip wheel) writes into the checkout; .gitignore lists them
BUILD_LEFTOVERS = ("build", "adatask_mtl.egg-info")
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_NO_CACHE_DIR": "1"}
HARNESS = """
import importlib, importlib.util, json, sys
example = open("readme_example.py").read()
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


def pinned_torchjd():
    line = next(line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("torchjd"))
    return line.split("==")[1].strip()


def run(command, cwd):
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env={**clean, **PIP_ENV},
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
    assert [r for r in requires if "extra" not in r] == ["torch>=2.13"]
    (torchjd,) = [r for r in requires if r.startswith("torchjd")]
    assert f"=={pinned_torchjd()}" in torchjd and 'extra == "weighting"' in torchjd


def test_readme_example_runs_outside_the_repository_after_an_editable_install(tmp_path):
    before = {name for name in BUILD_LEFTOVERS if (REPO / name).exists()}
    venv = tmp_path / "venv"
    # no pip of its own: the bundled setuptools (65) cannot build a wheel without the wheel
    # package; this interpreter's site-packages (torch, pip, setuptools) come in through a .pth
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout
    (Path(site.strip()) / "outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-e", REPO],
        cwd=tmp_path)
    assert {name for name in BUILD_LEFTOVERS if (REPO / name).exists()} == before
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "readme_example.py").write_text(readme_example())
    report = json.loads(run([python, "-c", HARNESS], cwd=work).stdout)
    assert report["optim"] == str(REPO / "optim" / "__init__.py")  # the checkout itself: editable
    # the example's import needs torch alone, and the training code is not installed
    assert report["loaded_by_example"] == ["optim", "optim.adatask", "optim.sgd_core", "optim.task_gradients"]
    assert report["repo_packages"] == []
