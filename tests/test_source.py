"""data.source: an unfinished build is refused wherever it is, never replaced by SynthCity."""
import pytest
from test_prepare_cityscapes import OUT, make_raw

from data import source
from data.check import DatasetError
from data.datasets import DATASETS
from data.prepare_cityscapes import prepare


@pytest.fixture
def unfinished(tmp_path):
    """A build whose last step did not happen, as a kill leaves it."""
    make_raw(tmp_path / "raw")
    prepare(tmp_path / "raw", tmp_path / "out", size=OUT)
    (tmp_path / "out" / "COMPLETE").unlink()
    return tmp_path / "out"


def test_unfinished_build_at_the_default_place_is_an_error_not_a_fallback(unfinished, monkeypatch):
    monkeypatch.setattr(DATASETS["cityscapes"], "default_root", unfinished)
    announced = []
    with pytest.raises(DatasetError, match="unfinished") as error:
        source.resolve(None, None, None, 7, 8, 4, announce=announced.append)
    assert "--dataset synthcity" in str(error.value) and not announced


def test_unfinished_build_given_by_path_is_refused(unfinished):
    with pytest.raises(DatasetError, match=f"--data-path {unfinished} does not hold a valid release"):
        source.resolve(None, str(unfinished), None, 7, 8, 4)
    (unfinished / "COMPLETE").write_bytes(b"")  # a marker that does not vouch for SHA256SUMS
    with pytest.raises(DatasetError, match="does not match"):
        source.open_release(unfinished, 7)
