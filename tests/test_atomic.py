"""runfolder/atomic.py: files and folders written whole or not at all, on a real file system."""
import errno
import os

import pytest

from runfolder import atomic


def entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_file_is_written_whole_with_the_umasks_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_text(tmp_path / "a.json", "{}\n")
        atomic.write_bytes(tmp_path / "b.npy", b"\x00\x01")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").read_text() == "{}\n" and (tmp_path / "b.npy").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert entries(tmp_path) == ["a.json", "b.npy"]  # no temporary file left


def test_the_replaced_file_can_be_kept(tmp_path):
    atomic.write_text(tmp_path / "checkpoint", "old")
    with atomic.atomic_write(tmp_path / "checkpoint", previous=tmp_path / "checkpoint.prev") as f:
        f.write("new")
    assert (tmp_path / "checkpoint").read_text() == "new" and (tmp_path / "checkpoint.prev").read_text() == "old"


def test_until_the_block_ends_the_old_file_stays_and_the_new_one_is_a_hidden_neighbour(tmp_path):
    path = tmp_path / "metrics.jsonl"
    atomic.write_text(path, "old\n")
    with atomic.atomic_write(path) as f:
        f.write("new\n")
        f.flush()
        [tmp] = [p for p in tmp_path.iterdir() if p != path]
        assert atomic.is_temporary(tmp.name, of=path.name) and tmp.read_text() == "new\n"
        assert list(tmp_path.glob(atomic.TEMPORARIES)) == [tmp]
        assert path.read_text() == "old\n"
    assert path.read_text() == "new\n" and entries(tmp_path) == ["metrics.jsonl"]


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "lease.json"
    with atomic.atomic_write(path) as first, atomic.atomic_write(path) as second:
        first.write("first")
        second.write("second")
    assert path.read_text() == "first"  # the last to finish wins (the with blocks end in reverse)
    assert entries(tmp_path) == ["lease.json"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    atomic.write_text(path, "old")
    with pytest.raises(KeyError), atomic.atomic_write(path) as f:  # not an OSError: raised as it is
        f.write("half")
        raise KeyError("x")
    assert path.read_text() == "old" and entries(tmp_path) == ["summary.json"]


@pytest.mark.parametrize("error, message", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device (the disk is full)"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded"),
])
def test_an_os_error_becomes_a_write_error_naming_the_file(tmp_path, error, message):
    path = tmp_path / "au.csv"
    with pytest.raises(atomic.WriteError) as caught, atomic.atomic_write(path):
        raise error
    assert str(caught.value) == f"cannot write {path}: {message}"
    assert isinstance(caught.value, OSError) and entries(tmp_path) == []


def test_a_missing_folder_is_a_write_error_naming_the_file(tmp_path):
    with pytest.raises(atomic.WriteError, match=f"cannot write {tmp_path / 'gone' / 'x'}: No such file or directory"):
        atomic.write_text(tmp_path / "gone" / "x", "")


def test_temporary_names():
    assert atomic.is_temporary(".lease.json.3fa2c1d0.tmp", of="lease.json")
    assert atomic.is_temporary(".2.npy.tmp") and not atomic.is_temporary(".2.npy.tmp", of="lease.json")
    assert not atomic.is_temporary("lease.json.tmp") and not atomic.is_temporary(".lock")


def test_a_folder_appears_only_once_complete(tmp_path):
    out = tmp_path / "data"
    with atomic.atomic_folder(out) as partial:
        (partial / "train").mkdir()
        (partial / "train" / "0.npy").write_bytes(b"0")
        assert not out.exists() and atomic.is_temporary(partial.name, of="data") and partial.parent == tmp_path
    assert entries(out) == ["train"] and (out / "train" / "0.npy").read_bytes() == b"0"
    assert entries(tmp_path) == ["data"]


def test_an_empty_folder_is_replaced_one_with_content_is_not(tmp_path):
    (tmp_path / "empty").mkdir()
    with atomic.atomic_folder(tmp_path / "empty") as partial:
        (partial / "x").write_text("x")
    assert entries(tmp_path / "empty") == ["x"]
    with pytest.raises(atomic.WriteError, match=f"cannot write {tmp_path / 'empty'}: "), \
            atomic.atomic_folder(tmp_path / "empty") as partial:
        (partial / "y").write_text("y")
    assert entries(tmp_path / "empty") == ["x"] and entries(tmp_path) == ["empty"]


def test_an_interrupted_folder_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic.atomic_folder(tmp_path / "data") as partial:
        (partial / "0.npy").write_bytes(b"0")
        raise KeyboardInterrupt
    assert entries(tmp_path) == []


def test_temporaries_of_a_path_are_its_own_neighbours_only(tmp_path):
    names = [".data.0123abcd.tmp", ".data.ffffffff.tmp", ".data.x.0123abcd.tmp", ".data.0123abcd.tmp.tmp",
             ".data.0123ABCD.tmp", ".datb.0123abcd.tmp", "data.0123abcd.tmp", ".data.0123abc.tmp"]
    for name in names:
        (tmp_path / name).mkdir()
    assert [p.name for p in atomic.temporaries_of(tmp_path / "data")] == names[:2]
    assert [p.name for p in atomic.temporaries_of(tmp_path / "data.x")] == [".data.x.0123abcd.tmp"]
