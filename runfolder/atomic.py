"""Files and folders written whole or not at all: the repository's one atomic-write idiom
(docs/design.md, "Atomic writes and checkpoints").

A file is written to a hidden temporary neighbour `.<name>.<random>.tmp` in its own folder,
flushed and fsynced, then renamed over `path` (os.replace, atomic within one file system): a
reader, or a run resumed after a kill, sees the old file or the new one, never half of one.
The random part lets two writers of one file (a lease's owner and the process taking the
folder over) never write into each other's temporary file. On any failure the temporary file
is removed and an OSError becomes WriteError naming the file. Only a kill -9, or a signal whose
handler raises in the instant between creating the temporary and entering the block that
removes it, can leave one behind: TEMPORARIES (or temporaries_of) finds it for the cleanup at
the next start.

atomic_folder does the same for a folder filled file by file (a generated data set): it is
filled under a temporary name and renamed to its own once complete.
"""
import errno
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"
TEMPORARIES = f".*{TEMPORARY_SUFFIX}"  # the glob pattern of every temporary neighbour


class WriteError(OSError):
    """A file could not be written (disk full, read-only, quota); the message names it. The
    file it would have replaced is left as it was. An OSError, so that what handles a failed
    write (the lease's heartbeat, a command line's error message) handles this one too."""


def is_temporary(name, of=None):
    """Whether `name` is a temporary neighbour made here (of the file named `of`, when given)."""
    return name.startswith(f".{of}." if of else ".") and name.endswith(TEMPORARY_SUFFIX)


def temporaries_of(path):
    """The temporary neighbours of `path` that exist now, as _temporary_neighbour names them:
    left by a writer that was killed, or interrupted before it could remove its own (a Ctrl-C
    between os.mkdir and the `try` of atomic_folder). Only a caller that knows no writer of
    `path` is at work (it holds the lock that writers take) may remove them."""
    path = Path(path)
    exact = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}{re.escape(TEMPORARY_SUFFIX)}")
    return sorted(p for p in path.parent.glob(TEMPORARIES) if exact.fullmatch(p.name))


def _temporary_neighbour(path, make):
    """(name, make(name)) for a fresh temporary neighbour of `path`; `make` creates it, failing
    with FileExistsError where the name is taken, and is tried again with another name."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        try:
            return tmp, make(tmp)
        except FileExistsError:
            continue


def _write_error(path, error):
    full = " (the disk is full)" if error.errno == errno.ENOSPC else ""
    return WriteError(f"cannot write {path}: {error.strerror or error}{full}")


def _create_file(tmp):
    # 0o666 as open() creates files: the umask decides, as for every other file of the folder.
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


@contextmanager
def atomic_write(path, mode="w", previous=None):
    """Yield a file opened with `mode` ("w" or "wb") whose content replaces `path` once the block
    ends. `previous`: where the replaced file goes (the checkpoint before the latest)."""
    path = Path(path)
    try:
        tmp, fd = _temporary_neighbour(path, _create_file)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise _write_error(path, e) from None
        raise


def write_bytes(path, data):
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path, text):
    with atomic_write(path) as f:
        f.write(text)


@contextmanager
def atomic_folder(path):
    """Yield a temporary neighbour folder to fill; once the block ends it is renamed to `path`,
    which must be absent or an empty folder (then replaced). On any failure the temporary folder
    and its content are removed and an OSError becomes WriteError naming `path`."""
    path = Path(path)
    try:
        tmp, _ = _temporary_neighbour(path, os.mkdir)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        yield tmp
        if path.is_dir():
            path.rmdir()
        tmp.rename(path)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        raise _write_error(path, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
