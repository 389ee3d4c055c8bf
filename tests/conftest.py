import pytest
import slurm_cluster

from data import synthcity


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
