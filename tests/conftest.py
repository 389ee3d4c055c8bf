import pytest

from data import synthcity


@pytest.fixture(scope="session")
def tiny_synthcity(tmp_path_factory):
    """A tiny SynthCity release (16 train, 8 val, 32x64) shared by the end-to-end tests."""
    return synthcity.generate(tmp_path_factory.mktemp("data") / "tiny", n_train=16, n_val=8, height=32, width=64,
                              seed=1, progress=False)
