"""The --weighting methods (docs/methods.md, "Weighting methods"): one class per file, registered here.

WEIGHTINGS maps each --weighting name to its class; build_weighting constructs one.
Each class carries its metadata (paper, needs, cost, OPTIONS), from which
`method_table()` renders the docs' method table (docs/weighting.md) and the CLI builds --help and its
--<method>-<option> flags.
"""
import pkgutil

from .base import Contributions, Option, StepContext, WeightingMethod
from .lookahead import losses_after_fn

# One line per method: "module:Class". The order is that of --help and the docs' method table.
WEIGHTINGS = {cls.name: cls for cls in map(pkgutil.resolve_name, (
    # loss-only
    "optim.weighting.ew:EqualWeighting",
    "optim.weighting.rlw:RandomLossWeighting",
    "optim.weighting.dwa:DynamicWeightAverage",
    "optim.weighting.uw:UncertaintyWeighting",
    "optim.weighting.famo:FAMO",
    "optim.weighting.imtl_l:IMTLL",
    "optim.weighting.stch:STCH",
    "optim.weighting.gls:GLS",
    # gradient methods
    "optim.weighting.pcgrad:PCGrad",
    "optim.weighting.gdod:GDOD",
    "optim.weighting.hydalearn:HydaLearn",
    "optim.weighting.mgda:MGDA",
    "optim.weighting.cagrad:CAGrad",
    "optim.weighting.imtl:IMTLG",
    "optim.weighting.upgrad:UPGrad",
    "optim.weighting.aligned_mtl:AlignedMTL",
    "optim.weighting.nash_mtl:NashMTL",
    "optim.weighting.gradnorm:GradNorm",
    "optim.weighting.graddrop:GradDrop",
    "optim.weighting.gradvac:GradVac",
    "optim.weighting.db_mtl:DBMTL",
    "optim.weighting.fairgrad:FairGrad",
    "optim.weighting.moco:MoCo",
    "optim.weighting.sdmgrad:SDMGrad",
    "optim.weighting.excess_mtl:ExcessMTL",
    "optim.weighting.config:ConFIG",
    "optim.weighting.dualproj:DualProj",
))}


def build_weighting(name, num_tasks, **options):
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown --weighting {name!r}; valid names: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](num_tasks, **options)


def _option_text(key, option):
    choices = f" ({'|'.join(option.choices)})" if option.choices else ""
    return f"{key}={option.default}{choices}"


def method_table(against=None):
    """The methods as a Markdown table: name, paper, what a step needs, added cost, how it
    compares with the published implementation, options. against: {name: text} for that
    column (the docs' comes from the goldens: scripts/goldens/ours.py, against_published);
    a method it lacks shows its `fidelity`."""
    rows = ["| --weighting | Paper | Needs per step | Added cost per step | Against the published code | Options (default) |",
            "|---|---|---|---|---|---|"]
    for name, cls in WEIGHTINGS.items():
        options = ", ".join(_option_text(k, o) for k, o in cls.OPTIONS.items()) or "–"
        column = (against or {}).get(name, cls.fidelity)
        rows.append(f"| `{name}` | {cls.paper} | {cls.needs} | {cls.cost} | {column} | {options} |")
    return "\n".join(rows)


__all__ = [
    "WEIGHTINGS",
    "Contributions",
    "Option",
    "StepContext",
    "WeightingMethod",
    "build_weighting",
    "losses_after_fn",
    "method_table",
]
