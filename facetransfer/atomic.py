"""Files that are replaced whole or not at all.

Every file facetransfer writes for later use (checkpoints, split manifests, results, feature
caches, imported weights) goes through :func:`atomic_write`: the content is written to a hidden
temporary file in the destination's folder, flushed to disk and renamed over the destination.
A reader, or a run killed half-way, sees the old file or the new one, never a torn one::

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

TEMPORARY_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given the file


def temporary_name_pattern(path: str | os.PathLike) -> str:
    """The glob pattern of the temporary files :func:`atomic_write` makes for ``path``."""
    return f".{Path(path).name}.*{TEMPORARY_SUFFIX}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path in ``path``'s folder to write to (for writers that take a path, such
    as ``torch.onnx.export``); on success it is synced and renamed over ``path``, on an exception
    removed and ``path`` left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:  # the content on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes files private; keep the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (power loss, not kills)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path`` (fsync, rename).

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes); ``open_kwargs`` go to :func:`open`
    (``newline=""`` for CSV, ``encoding``). On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
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
    for stale in path.parent.glob(temporary_name_pattern(path)):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    return removed


__all__ = ["atomic_path", "atomic_write", "remove_stale_temporaries", "temporary_name_pattern", "write_text_atomic"]
