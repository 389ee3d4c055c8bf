"""Write tests/goldens/<method>.json by running the published implementations (scripts/goldens).

    /tmp/refvenv/bin/python -m scripts.make_goldens --libmtl /tmp/refs/LibMTL [--out tests/goldens]

Each --<runner> PATH names a checkout of one published repository (the `fetch` tool gives a bare
git directory: `git --git-dir=DIR archive HEAD | tar -x -C PATH`); its runner module
scripts/goldens/<module>.py imports the published code from there, runs it on the seeded
inputs of scripts/goldens/inputs.py and returns one golden dict per method
(scripts/goldens/__init__.py). Only those numbers are written, never the published source.
A `git archive` extract names its commit in PATH/COMMIT (commit_of). A runner may
also return {"method": m, "extends": true, "reference": {"switches": {...}}, "cases": [...]}: the
cases of a switch whose reference is its repository, added to m's golden from m's own runner
(made in the same run, or before) once every runner has written (`extend`). Run it with an environment that has the published code's dependencies, from the repository root.
"""
import argparse
import importlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runfolder.atomic import write_text

# One line per published repository: "<cli name>": "scripts.goldens.<module>" (gives --<cli name> PATH).
RUNNERS = {
    "libmtl": "scripts.goldens.libmtl",
    "nash-mtl": "scripts.goldens.nash_mtl",
    "mgda": "scripts.goldens.mgda",
    "cagrad": "scripts.goldens.cagrad",
    "aligned-mtl": "scripts.goldens.aligned_mtl",
    "famo": "scripts.goldens.famo",
    "mtan": "scripts.goldens.mtan",
    "uw": "scripts.goldens.uw",
    "stch": "scripts.goldens.stch",
    "sdmgrad": "scripts.goldens.sdmgrad",
    "excess-mtl": "scripts.goldens.excess_mtl",
    "fairgrad": "scripts.goldens.fairgrad",
    "torchjd": "scripts.goldens.torchjd",
    "config": "scripts.goldens.config",
    "formulas": "scripts.goldens.formulas",
    "adatask": "scripts.goldens.adatask",
}


def commit_of(checkout):
    """The commit of a checkout: `git rev-parse HEAD` in a work tree, else the first line of
    PATH/COMMIT (a `git archive` extract has no .git: write it with
    `git --git-dir=DIR rev-parse HEAD > PATH/COMMIT`)."""
    checkout = Path(checkout)
    if (checkout / "COMMIT").is_file():
        return (checkout / "COMMIT").read_text().split()[0]
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"{checkout}: no commit known; write it into {checkout / 'COMMIT'}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m scripts.make_goldens", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "goldens",
                        help="where the <method>.json files go (default: tests/goldens)")
    for name, module in RUNNERS.items():
        parser.add_argument(f"--{name}", type=Path, metavar="PATH", dest=name.replace("-", "_"),
                            help=f"a checkout of the repository that {module} runs")
    args = parser.parse_args(argv)
    if not any(getattr(args, name.replace("-", "_")) for name in RUNNERS):
        parser.error("name at least one checkout: " + ", ".join(f"--{name} PATH" for name in RUNNERS))
    return args


def dumps(golden):
    """The file's text: one case's numbers per line would be long; indent 1 keeps it diffable."""
    return json.dumps(golden, indent=1, allow_nan=False) + "\n"


def main(argv=None):
    args = parse_args(argv)
    command = "python -m scripts.make_goldens " + " ".join(
        f"--{name} PATH" for name in RUNNERS if getattr(args, name.replace("-", "_")))
    written, extensions = {}, []
    for name, module in RUNNERS.items():
        checkout = getattr(args, name.replace("-", "_"))
        if checkout is None:
            continue
        if not checkout.is_dir():
            sys.exit(f"--{name} {shlex.quote(str(checkout))}: no such folder")
        for golden in importlib.import_module(module).make(checkout.resolve()):
            method = golden["method"]
            if golden.get("extends"):  # a switch's cases from this repository, for another runner's golden
                extensions.append((name, golden))
                continue
            if method in written:
                sys.exit(f"--{name}: method {method!r} was already written by --{written[method]}")
            golden.setdefault("generated_by", command)
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{method}.json"
            write_text(path, dumps(golden))
            written[method] = name
            cases = golden["cases"]
            print(f"{path}: {len(cases)} case(s), {sum(len(c['expected']) for c in cases)} step(s)")
    for name, extension in extensions:
        extend(args.out / f"{extension['method']}.json", extension, name)
    return 0


def extend(path, extension, name):
    """Add an extension's cases (replacing those of the same name) and its reference's
    "switches" to the golden at `path`, made now or before by the method's own runner."""
    if not path.is_file():
        sys.exit(f"--{name}: extends {extension['method']!r}, whose golden {path} is not there: "
                 f"name its own runner's checkout too")
    golden = json.loads(path.read_text())
    names = {case["name"] for case in extension["cases"]}
    golden["cases"] = [case for case in golden["cases"] if case["name"] not in names] + extension["cases"]
    golden["reference"].setdefault("switches", {}).update(extension["reference"].get("switches", {}))
    write_text(path, dumps(golden))
    print(f"{path}: + {len(extension['cases'])} case(s) from --{name}")


if __name__ == "__main__":
    sys.exit(main())
