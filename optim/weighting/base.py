"""The contract between the training step and a --weighting method (docs/methods.md, "Weighting methods").

A method turns K task losses (and, when it asks for them, the K per-task gradients of
the shared parameters) into K per-task contributions. It answers with a K×K mixing
matrix A: contribution i = Σ_j A_ij g_j. A weighting w is A = diag(w); PCGrad and GDOD
fill the off-diagonal. A plain optimizer applies the sum of the contributions; an
AdaTask optimizer feeds contribution i into task i's moments.

Loss-only methods (needs_grads = False) give their weights from the losses alone, so a
plain optimizer pays one backward of Σ w_k L_k. Gradient methods (needs_grads = True)
get the Gram matrix M = G Gᵀ and, when they need more, the gradients themselves.
"""
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch


@dataclass
class StepContext:
    """What the training step offers a method at one optimisation step.

    losses: (K,) detached task losses of this batch.
    gram: (K, K) Gram matrix of the per-task shared gradients (gradient methods only).
    grads: K lists of per-task gradients of the shared parameters (gradient methods only).
    epoch, step: position in training. lr: the optimizer's current learning rate.
    losses_after: look-ahead for methods that need it: given K-aligned shared-parameter
        displacements `delta` (a list of tensors, one per shared parameter) it returns the
        (K,) task losses on the same batch at θ + delta, in no_grad, with BatchNorm
        buffers restored afterwards. None where the loop does not offer it.
    """

    losses: torch.Tensor
    epoch: int
    step: int
    lr: float
    gram: torch.Tensor | None = None
    grads: list | None = None
    losses_after: Callable | None = None


class _OptionFields(NamedTuple):
    type: type
    default: Any
    help: str


class Option(_OptionFields):
    """One setting of a method, unpacking as (type, default, help); the CLI exposes it as
    --<method>-<option> (underscores as dashes). `choices`, if given, lists the values a
    str option allows."""

    def __new__(cls, type, default, help, choices=None):
        option = super().__new__(cls, type, default, help)
        option.choices = choices
        return option


class WeightingMethod:
    """Base class. Subclasses set `needs_grads` (and `needs_lookahead`) and implement `weights`
    or `mix`; the step calls one of them once per step (RLW, PCGrad and Nash-MTL advance their
    state there).

    Class metadata, read by the registry for --help and the README table:
    name (the --weighting key), paper (citation), needs (what a step must supply),
    cost (what the method adds per step), OPTIONS ({option name: Option}). Each option
    becomes an attribute of the same name, validated against its Option.
    """

    needs_grads = False
    needs_lookahead = False  # True: the step must offer StepContext.losses_after
    name = ""
    paper = ""
    needs = "losses"
    cost = ""
    OPTIONS: dict = {}

    def __init__(self, num_tasks, **options):
        self.num_tasks = num_tasks
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                             f"valid options: {', '.join(self.OPTIONS) or 'none'}")
        for key, option in self.OPTIONS.items():
            setattr(self, key, _checked(self.name, key, option, options.get(key, option.default)))

    def weights(self, ctx):
        """The (K,) weights w of this step (detached), for methods that only weight."""
        raise NotImplementedError

    def mix(self, ctx):
        """The (K, K) mixing matrix A; by default diag(weights)."""
        return torch.diag(self.weights(ctx))

    def end_epoch(self, epoch, mean_losses):
        """Called after each training epoch with the (K,) epoch-mean training losses."""

    def after_step(self, ctx):
        """Called after the optimizer step (FAMO's update of its own weights)."""

    def options(self):
        """The method's settings, recorded in config.json."""
        return {key: getattr(self, key) for key in self.OPTIONS}

    def state_dict(self):
        """Tensors and plain Python values only, so torch.load(weights_only=True) reads it."""
        return {}

    def load_state_dict(self, state):
        pass


def _checked(method, key, option, value):
    """`value` as option `key` of `method` accepts it (ints pass as floats; bools are not ints)."""
    if option.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, option.type) or (option.type is not bool and isinstance(value, bool)):
        raise ValueError(f"{method}: option {key} expects {option.type.__name__}, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise ValueError(f"{method}: option {key} must be one of {', '.join(map(str, option.choices))}, got {value!r}")
    return value


def gram64(ctx):
    """ctx.gram as float64 on the CPU: the K×K algebra is tiny, and float64 keeps
    eigenvectors and solvers stable when gradients are nearly (anti-)parallel."""
    if ctx.gram is None:
        raise ValueError("this weighting needs per-task gradients: StepContext.gram is None")
    return ctx.gram.detach().to("cpu", torch.float64)
