"""Files that are replaced whole or not at all: every file facetransfer writes for later use goes through
:func:`atomic_write` (a hidden temporary file next to it, flushed and renamed over it), so a reader, or a
run killed half-way, sees the old file or the new one, never a torn one::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> with atomic_write(path) as fh:
    ...     _ = fh.write("hello")
    >>> path.read_text()
    'hello'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import FileSystemError
from .filesystem import filesystem_error, find_os_error

TEMPORARY_SUFFIX = ".tmp"


_UMASK = os.umask(0)  # the only way to read the umask is to set it
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would have given the file


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str = "file", kept: str | None = None) -> Iterator[Path]:
    """A hidden temporary path in ``path``'s folder to write to (for writers that take a path, such
    as ``torch.onnx.export``); on success it is synced and renamed over ``path``, on an exception
    removed and ``path`` left as it was.

    A filesystem fault (read-only, full, no permission) is a :class:`~facetransfer.errors.FileSystemError`
    naming ``what`` and ``path``: ``cannot save checkpoint runs/last.ckpt: No space left on device (the
    previous last.ckpt is kept)``; ``kept`` replaces the part in brackets.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise filesystem_error(err, "create folder", path.parent, kept=f"{path.name} was not written") from err
    existed = path.exists()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        os.close(fd)
    except OSError as err:
        raise _write_error(err, what, path, existed, kept) from err
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:  # the content on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes files private; keep the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        fault = find_os_error(err) if isinstance(err, Exception) else None
        if fault is not None and not isinstance(err, FileSystemError):
            raise _write_error(fault, what, path, existed, kept) from err
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (power loss, not kills)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _write_error(err: OSError, what: str, path: Path, existed: bool, kept: str | None = None) -> FileSystemError:
    operation = "write" if what == "file" else f"save {what}"
    kept = kept or (f"the previous {path.name} is kept" if existed else "the partial file was removed")
    failure = OSError(err.errno, err.strerror) if err.errno is not None else OSError(str(err))
    return filesystem_error(failure, operation, path, kept=kept)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", what: str = "file", kept: str | None = None, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """:func:`atomic_path`'s temporary file, opened with ``mode`` ``"w"`` (text) or ``"wb"`` (bytes);
    ``open_kwargs`` go to :func:`open` (``newline=""`` for CSV, ``encoding``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path, what, kept) as tmp, open(tmp, mode, **open_kwargs) as fh:
        yield fh


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`; returns ``path``."""
    with atomic_write(path, encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def remove_stale_temporaries(path: str | os.PathLike) -> int:
    """Delete temporary files that a killed writer of ``path`` left behind; returns how many."""
    path = Path(path)
    removed = 0
    for stale in path.parent.glob(f".{path.name}.*{TEMPORARY_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    return removed


__all__ = ["atomic_path", "atomic_write", "remove_stale_temporaries", "write_text_atomic"]
