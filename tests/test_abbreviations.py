"""No command line of the repository expands an abbreviated flag: `--see 5` is refused, never
taken for `--seed 5`. Every parser an entry point builds (sub-parsers included) is caught as it
parses, and each of its long flags, cut by one character, must come back unrecognised. The
sweep refuses every prefix of a flag it sets itself after `--`."""
import argparse
import importlib
import sys

import pytest

from runfolder.launcher_flags import OWNED_FLAGS
from sweeps.plan import PlanError, build_plan

ENTRY_POINTS = ["main_cityscapes", "sweeps.cli", "evaluation.aggregate.__main__", "evaluation.baseline",
                "evaluation.trivial", "data.check", "data.prepare_cityscapes", "data.synthcity", "scripts.demo",
                "scripts.bench_step", "scripts.bench_loader", "scripts.bench_threads", "scripts.bench_help",
                "scripts.bench_distributed", "scripts.compare_runs", "scripts.gradient_sensitivity",
                "scripts.mgda_accuracy", "scripts.plot_au", "scripts.gpu_report", "scripts.make_goldens",
                "evaluation.comparison", "sweeps.reproduce", "sweeps.tune", "sweeps.compare"]


class Parsed(Exception):
    """Raised instead of parsing: the parsers are caught, nothing runs."""


def parsers_of(module_name, monkeypatch):
    built = []
    original_init = argparse.ArgumentParser.__init__

    def record(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        built.append(self)

    def stop(self, *args, **kwargs):
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "__init__", record)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", stop)
    monkeypatch.setattr(sys, "argv", [module_name, "--help"])
    module = importlib.import_module(module_name)
    main = getattr(module, "main", None) or module.build_parser
    with pytest.raises(Parsed):
        main(["--help"]) if main.__code__.co_argcount else main()
    monkeypatch.undo()
    return built


@pytest.mark.parametrize("module_name", ENTRY_POINTS)
def test_no_parser_expands_an_abbreviated_flag(module_name, monkeypatch):
    parsers = parsers_of(module_name, monkeypatch)
    assert parsers, f"{module_name}: no parser built"
    for parser in parsers:
        flags = {flag for action in parser._actions for flag in action.option_strings}
        positionals = ["x" for action in parser._actions if not action.option_strings]
        for action in parser._actions:
            action.required = False
        for flag in sorted(f for f in flags if f.startswith("--") and len(f) > 3):
            cut = flag[:-1]
            if cut in flags:
                continue
            _, left = parser.parse_known_args([*positionals, f"{cut}=1"])
            assert f"{cut}=1" in left, f"{module_name}: {cut} was taken for {flag}"


@pytest.mark.parametrize("owned", OWNED_FLAGS)
def test_the_sweep_refuses_every_prefix_of_its_own_flags_after_dashes(owned):
    for end in range(3, len(owned) + 1):
        for token in (owned[:end], f"{owned[:end]}=5"):
            with pytest.raises(PlanError, match=f"{owned} is set by the sweep itself"):
                build_plan(["adam"], extra=[token, "5"])
    build_plan(["adam"], extra=["--threads", "1"])  # a flag the sweep does not own passes
