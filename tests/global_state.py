"""The process-wide state a test could leave changed for the tests after it, which
tests/conftest.py fails a test for: torch's thread counts, default dtype, deterministic and
grad modes, the global RNGs of torch, numpy and python, the environment ($OMP_NUM_THREADS becomes
torch's thread count in main_cityscapes.py; $MTL_PARENT_PID, $MTL_LEASE_TIMEOUT and the like
change how a run behaves), and the main thread's signal mask and stop signals' handlers.
In float32 a different thread count sums in a different order, and a different RNG state draws
different weights, so either changes later results; a child process inherits a blocked or
ignored SIGINT, so a later test's Ctrl-C would never reach it."""
import hashlib
import os
import random
import signal
from collections.abc import Callable
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch


class Part(NamedTuple):
    read: Callable
    write: Callable | None  # None: cannot be set back (torch allows it only before its first parallel work)
    shown: Callable = repr  # what a failure prints of a value; parts compare by it


def digest(*chunks):
    """A short fingerprint of an RNG state: enough to tell two states apart in a message."""
    return "state " + hashlib.sha1(b"".join(chunks)).hexdigest()[:10]


# Not a test's to restore: pytest names the running test and its phase in PYTEST_CURRENT_TEST;
# the one_node_slurm fixture of tests/conftest.py sets SLURM_CONF for the whole session;
# `import ray` sets RAY_CLIENT_MODE and torch's inductor TORCHINDUCTOR_CACHE_DIR, once each.
NOT_COMPARED = frozenset({"PYTEST_CURRENT_TEST", "SLURM_CONF", "RAY_CLIENT_MODE", "TORCHINDUCTOR_CACHE_DIR"})


def environment():
    return {key: value for key, value in os.environ.items() if key not in NOT_COMPARED}


def set_environment(saved):
    for key in environment().keys() - saved.keys():
        del os.environ[key]
    os.environ.update(saved)


def set_deterministic(modes):
    enabled, warn_only = modes
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def set_cudnn(flag):
    return lambda value: setattr(torch.backends.cudnn, flag, value)


def blocked_signals():
    return signal.pthread_sigmask(signal.SIG_BLOCK, [])


def set_blocked_signals(blocked):
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def handler_of(signum):
    return Part(lambda: signal.getsignal(signum), lambda handler: signal.signal(signum, handler))


PARTS = {
    "torch.get_num_threads()": Part(torch.get_num_threads, torch.set_num_threads),
    "torch.get_num_interop_threads()": Part(torch.get_num_interop_threads, None),
    "torch.get_default_dtype()": Part(torch.get_default_dtype, torch.set_default_dtype),
    "torch's deterministic algorithms (enabled, warn_only)": Part(
        lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        set_deterministic),
    "torch.backends.cudnn.deterministic": Part(lambda: torch.backends.cudnn.deterministic, set_cudnn("deterministic")),
    "torch.backends.cudnn.benchmark": Part(lambda: torch.backends.cudnn.benchmark, set_cudnn("benchmark")),
    "torch.is_grad_enabled()": Part(torch.is_grad_enabled, torch.set_grad_enabled),
    "torch's global RNG": Part(torch.random.get_rng_state, torch.random.set_rng_state,
                               lambda state: digest(state.numpy().tobytes())),
    "numpy's global RNG": Part(np.random.get_state, np.random.set_state,
                               lambda state: digest(state[1].tobytes(), repr(state[2:]).encode())),
    "python's global RNG": Part(random.getstate, random.setstate, lambda state: digest(repr(state).encode())),
    "the environment": Part(environment, set_environment, dict),
    "the main thread's blocked signals": Part(blocked_signals, set_blocked_signals, lambda s: repr(sorted(s))),
    **{f"the handler of {sig.name}": handler_of(sig) for sig in (signal.SIGINT, signal.SIGTERM)},
}


def snapshot():
    return {name: part.read() for name, part in PARTS.items()}


def changes(before):
    """['what: before → after'] for each part that differs now from `before`."""
    now = snapshot()
    shown = [(name, part.shown(before[name]), part.shown(now[name])) for name, part in PARTS.items()]
    return [f"{name}: {difference(old, new)}" for name, old, new in shown if old != new]


def difference(old, new):
    if isinstance(old, dict):  # the environment: only the variables that changed
        return ", ".join(f"${key} {old.get(key)!r} → {new.get(key)!r}" for key in sorted(old.keys() | new.keys())
                         if old.get(key) != new.get(key))
    return f"{old} → {new}"


def restore(before):
    for name, part in PARTS.items():
        if part.write is not None:
            part.write(before[name])


@contextmanager
def seeded_and_restored(seed=0):
    """For code that seeds or draws from the global RNGs (an nn.Module's initialisation,
    torch.randn without a generator) or runs a program's main() in this process (it seeds them
    and may set the thread count): the RNGs seeded with `seed`, so that what it draws does not
    depend on the tests before it, and all of PARTS given back afterwards."""
    before = snapshot()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        restore(before)
