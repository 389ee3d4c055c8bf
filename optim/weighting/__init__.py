"""The --weighting methods (docs/methods.md, "Weighting methods"): one class per file, registered here.

WEIGHTINGS maps each --weighting name to its class; build_weighting constructs one.
Each class carries its metadata (paper, needs, cost, OPTIONS), from which
`method_table()` renders the README table and the CLI builds --help and its
--<method>-<option> flags.
"""
from .aligned_mtl import AlignedMTL
from .base import Option, StepContext, WeightingMethod
from .cagrad import CAGrad
from .dwa import DynamicWeightAverage
from .ew import EqualWeighting
from .famo import FAMO
from .gdod import GDOD
from .hydalearn import HydaLearn
from .imtl import IMTLG
from .lookahead import losses_after_fn
from .mgda import MGDA
from .nash_mtl import NashMTL
from .pcgrad import PCGrad
from .rlw import RandomLossWeighting
from .upgrad import UPGrad
from .uw import UncertaintyWeighting

WEIGHTINGS = {cls.name: cls for cls in (
    EqualWeighting, RandomLossWeighting, DynamicWeightAverage, UncertaintyWeighting, FAMO,
    PCGrad, GDOD, HydaLearn, MGDA, CAGrad, IMTLG, UPGrad, AlignedMTL, NashMTL,
)}


def build_weighting(name, num_tasks, **options):
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown --weighting {name!r}; valid names: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](num_tasks, **options)


def _option_text(key, option):
    choices = f" ({'|'.join(option.choices)})" if option.choices else ""
    return f"{key}={option.default}{choices}"


def method_table():
    """The methods as a Markdown table: name, paper, what a step needs, added cost, options."""
    rows = ["| --weighting | Paper | Needs per step | Added cost per step | Options (default) |",
            "|---|---|---|---|---|"]
    for name, cls in WEIGHTINGS.items():
        options = ", ".join(_option_text(k, o) for k, o in cls.OPTIONS.items()) or "–"
        rows.append(f"| `{name}` | {cls.paper} | {cls.needs} | {cls.cost} | {options} |")
    return "\n".join(rows)


__all__ = ["WEIGHTINGS", "build_weighting", "method_table", "losses_after_fn", "Option", "StepContext",
           "WeightingMethod"] + [cls.__name__ for cls in WEIGHTINGS.values()]
