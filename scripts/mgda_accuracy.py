"""How far MGDA's iterative solvers land from the exact min-norm point (the active-set solver,
--mgda-solver exact): the authors' MinNormSolver (--mgda-solver published, the default, with its
[0.001, 0.999] clamp) and torchjd's Frank-Wolfe MGDAWeighting (--mgda-solver frank_wolfe).

    .venv/bin/python -m scripts.mgda_accuracy [--trials 30]

For K = 2, 3, 4 and several (epsilon, max_iters), over random Gram matrices of gradients with
a correlated pair (and every fifth case an exactly collinear one), it prints the largest
|α − α*| and the largest relative excess of αᵀMα over the optimum, and the exact solver's own
KKT residual. The Frank-Wolfe rows are at several (epsilon, max_iters).
"""
import argparse

import torch

from optim.weighting.mgda import min_norm_weights, published_min_norm_weights

SETTINGS = [(1e-3, 100), (1e-6, 1000), (1e-9, 10_000), (1e-12, 100_000)]  # (epsilon, max_iters); the first: our default


def gram_matrices(num_tasks, trials, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        grads = torch.randn(num_tasks, 20, generator=generator, dtype=torch.float64)
        grads[1] = 0.3 * grads[0] + 0.5 * grads[1]
        if trial % 5 == 0:
            grads[-1] = 2 * grads[0]
        yield grads @ grads.T


def kkt_residual(gram, weights):
    value, slopes = weights @ gram @ weights, gram @ weights
    return max(float((value - slopes).clamp(min=0).max()), float((slopes[weights > 1e-12] - value).abs().max())) / value


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="random Gram matrices per K")
    args = parser.parse_args(argv)
    from torchjd.aggregation import MGDAWeighting

    print("| K | solver | max abs(α − α*) | max relative excess of αᵀMα |")
    print("|---|---|---|---|")
    for num_tasks in (2, 3, 4):
        grams = list(gram_matrices(num_tasks, args.trials))
        exact = [min_norm_weights(gram) for gram in grams]
        residual = max(kkt_residual(gram, w) for gram, w in zip(grams, exact))
        print(f"| {num_tasks} | exact (KKT residual {residual:.1e}) | 0 | 0 |")
        print(f"| {num_tasks} | published | {_row(published_min_norm_weights, grams, exact)} |")
        for epsilon, max_iters in SETTINGS:
            solver = MGDAWeighting(epsilon=epsilon, max_iters=max_iters)
            print(f"| {num_tasks} | frank_wolfe epsilon={epsilon:g} max_iters={max_iters} | "
                  f"{_row(solver, grams, exact)} |")


def _row(solver, grams, exact):
    """'max |α − α*| | max relative excess of αᵀMα' of `solver` over the Gram matrices."""
    error = excess = 0.0
    for gram, best in zip(grams, exact):
        weights = solver(gram)
        error = max(error, float((weights - best).abs().max()))
        excess = max(excess, float(weights @ gram @ weights / (best @ gram @ best)) - 1)
    return f"{error:.1e} | {excess:.1e}"


if __name__ == "__main__":
    main()
