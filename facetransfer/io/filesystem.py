"""Filesystem faults in one line: which operation failed on which path, why, and what was kept.

A read-only run folder, a full disk or a symbolic link that points to itself raise ``OSError``
deep inside Lightning, torch or PIL; the ``facetransfer`` command prints them as one line::

    >>> import errno
    >>> err = OSError(errno.EROFS, os.strerror(errno.EROFS), "/data/runs")
    >>> describe_os_error(err, "create folder")
    'cannot create folder /data/runs: Read-only file system'
    >>> describe_os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "save checkpoint", "last.ckpt",
    ...                   kept="the previous last.ckpt is kept")
    'cannot save checkpoint last.ckpt: No space left on device (the previous last.ckpt is kept)'
"""

from __future__ import annotations

import errno
import os
import traceback

from ..errors import FileSystemError

_PATH = str | os.PathLike

# the innermost of these functions in a traceback says what was being done
_OPERATION_OF_FUNCTION = {
    **dict.fromkeys(("makedirs", "mkdir", "mkdtemp"), "create folder"),
    "mkstemp": "create a file in",
    **dict.fromkeys(("rename", "replace"), "rename"),
    **dict.fromkeys(("unlink", "remove", "rmdir", "rmtree"), "remove"),
    **dict.fromkeys(("scandir", "listdir", "iterdir"), "list folder"),
    **dict.fromkeys(("fsync", "write", "flush"), "write"),
    **dict.fromkeys(("copyfileobj", "copyfile"), "copy"),
}
# otherwise the error number does
_OPERATION_OF_ERRNO = {
    **dict.fromkeys((errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG), "write"),
    **dict.fromkeys((errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.EISDIR), "open"),
    **dict.fromkeys((errno.EACCES, errno.EPERM), "access"),
}
_EXPLANATION = {
    errno.ELOOP: "a symbolic link that points to itself or into a loop",
    errno.EDQUOT: "the disk quota is used up",
}


def _name(where: object) -> str:
    return os.fsdecode(where) if isinstance(where, (str, bytes, os.PathLike)) else str(where)


def find_os_error(err: BaseException | None) -> OSError | None:
    """``err`` itself when it is an ``OSError``, else the first ``OSError`` among its causes and contexts."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def raised_in(err: BaseException, package: str) -> bool:
    """Whether ``package`` (``tensorboard``) has a frame in ``err``'s traceback."""
    return any(f"{os.sep}{package}{os.sep}" in frame.filename for frame in traceback.extract_tb(err.__traceback__))


def guess_operation(err: OSError) -> str:
    """What was being done when ``err`` was raised, from its traceback (else from its error number)."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.name in _OPERATION_OF_FUNCTION:
            return _OPERATION_OF_FUNCTION[frame.name]
    return _OPERATION_OF_ERRNO.get(err.errno, "use")


def reason_of(err: OSError) -> str:
    """``Read-only file system``, ``Too many levels of symbolic links (a symbolic link that points ...)``."""
    reason = err.strerror or (str(err).strip().splitlines() or [type(err).__name__])[-1]
    explanation = _EXPLANATION.get(err.errno)
    return f"{reason} ({explanation})" if explanation else reason


def describe_os_error(err: OSError, operation: str | None = None, path: _PATH | None = None,
                      kept: str | None = None) -> str:
    """``cannot <operation> <path>: <reason> (<what was kept>)``; the operation is guessed when not given."""
    operation = operation or guess_operation(err)
    where = err.filename if err.filename is not None else path
    target = f" {_name(where)}" if where is not None else ""
    if err.filename2 is not None:
        target += f" to {_name(err.filename2)}"
    return f"cannot {operation}{target}: {reason_of(err)}" + (f" ({kept})" if kept else "")


def filesystem_error(err: OSError, operation: str | None = None, path: _PATH | None = None,
                     kept: str | None = None) -> FileSystemError:
    """The :class:`~facetransfer.errors.FileSystemError` to raise ``from`` an ``OSError``."""
    return FileSystemError(describe_os_error(err, operation, path, kept))


__all__ = ["describe_os_error", "filesystem_error", "find_os_error", "guess_operation", "raised_in", "reason_of"]
