"""Seeded inputs for the golden comparisons, the same bits on every machine: every number is
an integer draw of numpy's PCG64 divided by a power of two, so no transcendental function
(whose last bit may depend on the CPU's instruction set) makes them."""
import numpy as np

KINDS = ("random", "collinear")


def _uniform(rng, shape):
    """Exact dyadic values in [-1, 1)."""
    return rng.integers(0, 2**31, size=shape, dtype=np.int64) / 2.0**30 - 1.0


def golden_inputs(seed, num_tasks, shared_size=12, head_size=4, steps=1, scale=1.0, kind="random",
                  steps_per_epoch=1000):
    """The per-step inputs of one golden case: a list of `steps` dicts with
    grads (K, shared_size) float64: task k's gradient of the shared parameters,
    head_grads (K, head_size): task k's gradient of its own head,
    losses (K,) in [0.25, 2.25), epoch and step (epoch = step // steps_per_epoch).

    kind "random": independent rows; "collinear": every row is one common direction plus
    1e-3 of an independent one (nearly collinear gradients, where solvers divide by small
    eigenvalues). `scale` multiplies every gradient (small or large gradient norms)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for step in range(steps):
        grads = _uniform(rng, (num_tasks, shared_size))
        if kind == "collinear":
            grads = _uniform(rng, (1, shared_size)) + 1e-3 * grads
        head_grads = _uniform(rng, (num_tasks, head_size))
        losses = 1.25 + _uniform(rng, (num_tasks,))
        out.append({"grads": grads * scale, "head_grads": head_grads * scale, "losses": losses,
                    "epoch": step // steps_per_epoch, "step": step})
    return out
