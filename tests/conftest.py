import random

import global_state
import pytest
import slurm_cluster

from data import synthcity

STATE_BEFORE = pytest.StashKey[dict]()


def pytest_addoption(parser):
    parser.addoption("--shuffle", type=int, metavar="SEED",
                     help="run the test modules, and the tests within each, in an order shuffled with SEED "
                          "(to find a test that depends on the ones before it; a module's fixtures are still made once)")


def pytest_report_header(config):
    seed = config.getoption("shuffle")
    return f"order shuffled with --shuffle {seed}" if seed is not None else None


def pytest_collection_modifyitems(config, items):
    seed = config.getoption("shuffle")
    if seed is None:
        return
    shuffler = random.Random(seed)  # its own generator: the global one is the tests' (and guarded)
    modules = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    groups = list(modules.values())
    shuffler.shuffle(groups)
    for group in groups:
        shuffler.shuffle(group)
    items[:] = [item for group in groups for item in group]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[STATE_BEFORE] = global_state.snapshot()  # before any fixture of the test, session ones included
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item):
    """Fails a test that leaves process-wide state (tests/global_state.py) changed once its
    fixtures are torn down, and puts the state back, so that the tests after it run as they would
    alone. A test that changes it on purpose uses the seeded_and_restored fixture."""
    try:
        return (yield)
    finally:
        before = item.stash.get(STATE_BEFORE, None)
        changed = global_state.changes(before) if before is not None else []
        if changed:
            global_state.restore(before)
            pytest.fail(f"{item.nodeid} left process-wide state changed (restore it, e.g. with the "
                        f"seeded_and_restored fixture of tests/conftest.py):\n  " + "\n  ".join(changed), pytrace=False)


@pytest.fixture
def seeded_and_restored():
    """For a test that seeds or draws from the global RNGs or runs a main() in this process
    (tests/global_state.py, seeded_and_restored)."""
    with global_state.seeded_and_restored():
        yield


@pytest.fixture(scope="session")
def tiny_synthcity(tmp_path_factory):
    """A tiny SynthCity release (16 train, 8 val, 32x64) shared by the end-to-end tests."""
    return synthcity.generate(tmp_path_factory.mktemp("data") / "tiny", n_train=16, n_val=8, height=32, width=64,
                              seed=1, progress=False)


@pytest.fixture(scope="session")
def one_node_slurm(tmp_path_factory):
    """A one-node Slurm with a fake GPU in four shards (tests/slurm_cluster.py), shared by the
    session, with SLURM_CONF pointing its clients at it. Skips where it cannot start; fails under CI."""
    slurm_cluster.skip_unless_available(slurm_cluster.unavailable())
    with slurm_cluster.running(tmp_path_factory.mktemp("slurm")) as cluster, pytest.MonkeyPatch.context() as env:
        env.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster
