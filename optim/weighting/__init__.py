"""The --weighting methods (docs/methods.md, "Weighting methods"): one class per file, registered here.

WEIGHTINGS maps each --weighting name to its class; build_weighting constructs one.
Each class carries its metadata (paper, needs, cost, OPTIONS), from which
`method_table()` renders the README table and the CLI builds --help and its
--<method>-<option> flags.
"""
from .aligned_mtl import AlignedMTL
from .base import Contributions, Option, StepContext, WeightingMethod
from .cagrad import CAGrad
from .config import ConFIG
from .db_mtl import DBMTL
from .dualproj import DualProj
from .dwa import DynamicWeightAverage
from .ew import EqualWeighting
from .excess_mtl import ExcessMTL
from .fairgrad import FairGrad
from .famo import FAMO
from .gdod import GDOD
from .gls import GLS
from .graddrop import GradDrop
from .gradnorm import GradNorm
from .gradvac import GradVac
from .hydalearn import HydaLearn
from .imtl import IMTLG
from .imtl_l import IMTLL
from .lookahead import losses_after_fn
from .mgda import MGDA
from .moco import MoCo
from .nash_mtl import NashMTL
from .pcgrad import PCGrad
from .rlw import RandomLossWeighting
from .sdmgrad import SDMGrad
from .stch import STCH
from .upgrad import UPGrad
from .uw import UncertaintyWeighting

WEIGHTINGS = {cls.name: cls for cls in (
    # loss-only
    EqualWeighting, RandomLossWeighting, DynamicWeightAverage, UncertaintyWeighting, FAMO, IMTLL, STCH, GLS,
    # gradient methods
    PCGrad, GDOD, HydaLearn, MGDA, CAGrad, IMTLG, UPGrad, AlignedMTL, NashMTL, GradNorm, GradDrop, GradVac,
    DBMTL, FairGrad, MoCo, SDMGrad, ExcessMTL, ConFIG, DualProj,
)}


def build_weighting(name, num_tasks, **options):
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown --weighting {name!r}; valid names: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](num_tasks, **options)


def _option_text(key, option):
    choices = f" ({'|'.join(option.choices)})" if option.choices else ""
    return f"{key}={option.default}{choices}"


def method_table():
    """The methods as a Markdown table: name, paper, what a step needs, added cost, how it
    compares with the published implementation, options."""
    rows = ["| --weighting | Paper | Needs per step | Added cost per step | Against the published code | Options (default) |",
            "|---|---|---|---|---|---|"]
    for name, cls in WEIGHTINGS.items():
        options = ", ".join(_option_text(k, o) for k, o in cls.OPTIONS.items()) or "–"
        rows.append(f"| `{name}` | {cls.paper} | {cls.needs} | {cls.cost} | {cls.fidelity} | {options} |")
    return "\n".join(rows)


__all__ = ["WEIGHTINGS", "build_weighting", "method_table", "losses_after_fn", "Contributions", "Option",
           "StepContext", "WeightingMethod"] + [cls.__name__ for cls in WEIGHTINGS.values()]
