"""The flags a launcher (a sweep, a recipe's plan) sets itself for every run: what the run is
(method, weighting, seed, tasks) and where its folder is (out, name, resume). A run folder's
name must say what the run is, so flags passed through to the runs, or written in a recipe,
may not give them."""

OWNED_FLAGS = ("--method", "--weighting", "--seed", "--out", "--name", "--resume", "--tasks")


def owned_flag(token):
    """The flag of OWNED_FLAGS that `token` (one argument) is or abbreviates, else None: "--see 5"
    must not reach a run as --seed, whatever a parser would make of it."""
    name = token.split("=", 1)[0]
    if len(name) < 3 or not name.startswith("--"):
        return None
    return next((flag for flag in OWNED_FLAGS if flag.startswith(name)), None)
