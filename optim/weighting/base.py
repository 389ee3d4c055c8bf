"""The contract between the training step and a --weighting method (docs/methods.md, "Weighting methods").

A method turns K task losses (and, when it asks for them, the K per-task gradients of
the shared parameters) into K per-task contributions. Most answer with a K×K mixing
matrix A: contribution i = Σ_j A_ij g_j. A weighting w is A = diag(w); PCGrad and GDOD
fill the off-diagonal. A method that is no such mixing (GradDrop's per-coordinate masks,
ConFIG's common direction) returns the contributions themselves from `contributions`.
A plain optimizer applies the sum of the contributions; an AdaTask optimizer feeds
contribution i into task i's moments.

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


# What task k's own parameters (its head) get under a gradient method: "own", its plain
# ∇L_k; "weighted", α_k ∇L_k with α the method's effective weights (the column sums of A), as
# backpropagating the weighted loss Σ α_k L_k does in the published MGDA, IMTL-G and Nash-MTL code.
HEAD_GRADS = ("own", "weighted")


class Contributions(NamedTuple):
    """A gradient method's answer: K contribution lists aligned with the shared parameters
    (None where no task reaches a parameter), and the K×K mixing matrix that made them, or
    None for a method that is no mixing (diagnostics then report no effective weights)."""

    grads: list
    mixing: torch.Tensor | None


def gram_matrix(grads: list[list[torch.Tensor | None]]) -> torch.Tensor:
    """M = G Gᵀ (K×K) of K per-task gradient lists, accumulated in float64: a float32 product
    loses the small eigenvalue of nearly collinear gradients, which the solvers divide by.
    None counts as zero."""
    num_tasks = len(grads)
    reference = next(g for task in grads for g in task if g is not None)
    gram = torch.zeros(num_tasks, num_tasks, dtype=torch.float64, device=reference.device)
    for per_task in zip(*grads):
        present = [k for k, g in enumerate(per_task) if g is not None]
        if not present:
            continue
        flat = torch.stack([per_task[k].reshape(-1) for k in present]).double()
        gram[torch.tensor(present)[:, None], torch.tensor(present)[None, :]] += flat @ flat.T
    return gram


def flat_gradients(grads: list[list[torch.Tensor | None]]) -> tuple[torch.Tensor, list[torch.Size | None]]:
    """The (K, P) matrix of K per-task gradient lists, the parameters flattened and
    concatenated in order, None as zeros, and each parameter's shape (None for a parameter
    that no task reaches: it takes no columns). For methods that work on the whole vectors."""
    columns, shapes = [], []
    for per_task in zip(*grads):
        like = next((g for g in per_task if g is not None), None)
        shapes.append(None if like is None else like.shape)
        if like is not None:
            columns.append(torch.stack([(torch.zeros_like(like) if g is None else g).reshape(-1) for g in per_task]))
    return torch.cat(columns, 1), shapes


def unflatten(rows: torch.Tensor, shapes: list[torch.Size | None]) -> list[list[torch.Tensor | None]]:
    """K lists of per-parameter tensors from the (K, P) `rows` laid out as flat_gradients does."""
    out = [[None] * len(shapes) for _ in rows]
    offset = 0
    for i, shape in enumerate(shapes):
        if shape is None:
            continue
        size = shape.numel()
        for k, row in enumerate(rows):
            out[k][i] = row[offset:offset + size].reshape(shape)
        offset += size
    return out


def mix_gradients(mixing: torch.Tensor, grads: list[list[torch.Tensor | None]]) -> list[list[torch.Tensor | None]]:
    """Contribution lists Σ_j A_ij g_j, built parameter by parameter so that at most one
    parameter's K temporaries exist beside the K gradient sets."""
    num_tasks = len(grads)
    mixed = [[None] * len(grads[0]) for _ in range(num_tasks)]
    for i_param, per_task in enumerate(zip(*grads)):
        if all(g is None for g in per_task):
            continue
        like = next(g for g in per_task if g is not None)
        stacked = torch.stack([torch.zeros_like(like) if g is None else g for g in per_task])
        combined = torch.tensordot(mixing.to(stacked.dtype).to(stacked.device), stacked, dims=1)
        for k in range(num_tasks):
            mixed[k][i_param] = combined[k]
    return mixed


class _OptionFields(NamedTuple):
    type: type
    default: Any
    help: str


# An option's legacy value when it came with its method: a run of the method always records it.
RECORDED_SINCE_ADDED = "recorded since its method was added"


class Option(_OptionFields):
    """One setting of a method, unpacking as (type, default, help); the CLI exposes it as
    --<method>-<option> (underscores as dashes). `choices`, if given, lists the values a
    str option allows. `legacy` is the value that reproduces the method's behaviour from
    before the option existed: a config.json of the method that lacks the option reads as
    it (docs/design.md, "Settings and their legacy values")."""

    def __new__(cls, type, default, help, choices=None, legacy=RECORDED_SINCE_ADDED):
        option = super().__new__(cls, type, default, help)
        option.choices = choices
        option.legacy = legacy
        return option


class WeightingMethod:
    """Base class. Subclasses set `needs_grads` (and `needs_lookahead`) and implement `weights`,
    `mix` or `contributions`; the step calls one of them once per step (RLW, PCGrad and Nash-MTL advance their
    state there).

    Class metadata, read by the registry for --help and the docs' method table:
    name (the --weighting key), paper (citation), needs (what a step must supply),
    cost (what the method adds per step), fidelity (how it compares with the published
    implementation), OPTIONS ({option name: Option}). Each option
    becomes an attribute of the same name, validated against its Option.
    """

    needs_grads = False
    default_head_grads = "own"  # gradient methods: what the task heads get (HEAD_GRADS)
    needs_lookahead = False  # True: the step must offer StepContext.losses_after
    mixes = True  # False: contributions() is overridden and reports no mixing matrix
    name = ""
    paper = ""
    needs = "losses"
    cost = ""
    fidelity = ""  # against the published implementation (docs/methods.md, "Published implementations")
    OPTIONS: dict = {}

    def __init_subclass__(cls, **kwargs):
        """Each option becomes an attribute of the instance: one named like a member of the
        class would silently replace it, so the class is refused when it is defined."""
        super().__init_subclass__(**kwargs)
        for key in cls.OPTIONS:
            if hasattr(cls, key) or key in ("num_tasks", "head_grads"):
                raise TypeError(f"{cls.__module__}.{cls.__name__}.OPTIONS: option {key!r} has the name of a member of "
                                f"the method ({cls.__name__}.{key}); rename the option")

    def __init__(self, num_tasks: int, head_grads: str | None = None, **options: Any):
        self.num_tasks = num_tasks
        self.head_grads = self.default_head_grads if head_grads is None else head_grads
        if self.head_grads not in HEAD_GRADS:
            raise ValueError(f"--head-grads must be one of {', '.join(HEAD_GRADS)}, got {self.head_grads!r}")
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                             f"valid options: {', '.join(self.OPTIONS) or 'none'}")
        for key, option in self.OPTIONS.items():
            setattr(self, key, _checked(self.name, key, option, options.get(key, option.default)))

    def weights(self, ctx: StepContext) -> torch.Tensor:
        """The (K,) weights w of this step (detached), for methods that only weight."""
        raise NotImplementedError

    def mix(self, ctx: StepContext) -> torch.Tensor:
        """The (K, K) mixing matrix A; by default diag(weights)."""
        return torch.diag(self.weights(ctx))

    def contributions(self, ctx: StepContext) -> Contributions:
        """A gradient method's K per-task contributions from ctx.grads: by default A g with
        A = mix(ctx). A method that is no K×K mixing overrides this (and sets mixes = False)."""
        mixing = self.mix(ctx)
        return Contributions(mix_gradients(mixing, ctx.grads), mixing)

    def head_weights(self, mixing: torch.Tensor) -> torch.Tensor:
        """The α_k of --head-grads weighted (task k's head gets α_k ∇L_k): by default the column
        sums of this step's mixing matrix; Nash-MTL's excludes its clip of the shared update."""
        return mixing.sum(0)

    def head_factors(self, mixing: torch.Tensor | None) -> torch.Tensor | None:
        """What the step multiplies task k's own gradients by, or None to leave them ∇L_k: by
        default head_weights under --head-grads weighted (IMTL-L's hybrid scales them by e^s
        under own, as LibMTL's IMTL backpropagates the scaled losses)."""
        return self.head_weights(mixing) if self.head_grads == "weighted" else None

    def end_epoch(self, epoch: int, mean_losses: torch.Tensor) -> None:
        """Called after each training epoch with the (K,) epoch-mean training losses."""

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimizer step (FAMO's update of its own weights)."""

    def options(self) -> dict[str, Any]:
        """The method's settings, recorded in config.json (with head_grads for gradient methods)."""
        settings = {key: getattr(self, key) for key in self.OPTIONS}
        return {**settings, "head_grads": self.head_grads} if self.needs_grads else settings

    def check_head_grads(self) -> None:
        """Refuse --head-grads weighted where it has no meaning: the step calls this once the
        method's needs are final (IMTL-L's hybrid turns needs_grads on in __init__). A method
        that is no mixing may still weight its heads by overriding head_weights (DB-MTL)."""
        own_head_weights = type(self).head_weights is not WeightingMethod.head_weights
        if self.head_grads == "weighted" and not (self.needs_grads and (self.mixes or own_head_weights)):
            kind = "a loss-only method (its heads always get w_k ∇L_k)" if not self.needs_grads else \
                "no K×K weighting of the task gradients"
            raise ValueError(f"--head-grads weighted: --weighting {self.name} is {kind}; use --head-grads own")

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values only, so torch.load(weights_only=True) reads it."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
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
