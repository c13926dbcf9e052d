"""Errors that facetransfer raises for bad input.

Every error names the problem (file, key, value) and what is allowed, so the
command line can print one line instead of a traceback::

    >>> raise DataError("no identity folders under /data/faces")
    Traceback (most recent call last):
    ...
    facetransfer.errors.DataError: no identity folders under /data/faces
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class FaceTransferError(ValueError):
    """Base class: bad input the user can fix. The CLI prints its message alone."""

    def __str__(self) -> str:
        text = super().__str__()
        raised_as = f"\n{type(self).__module__}.{type(self).__qualname__}: "
        if "\nOriginal Traceback" in text and raised_as in text:  # torch re-raises a DataLoader worker's error
            return text.rpartition(raised_as)[2].rstrip()  # with the worker's traceback: its own message only
        return text


class ConfigError(FaceTransferError):
    """A configuration value is unknown or out of range."""


class DataError(FaceTransferError):
    """A dataset folder, file or image is missing or unusable."""


class WeightsError(FaceTransferError):
    """Pretrained weights are missing, unreachable or do not match."""


class FileSystemError(FaceTransferError):
    """The filesystem refused an operation (read-only, full, a symlink loop, no permission); the ``OSError`` it
    replaces is its ``__cause__``."""


def unknown_choice(kind: str, value: object, known: Iterable[str]) -> ConfigError:
    """Build the standard 'unknown X' error listing the allowed values.

    >>> str(unknown_choice("backbone", "vgg", ["resnet18", "vgg16"]))
    "unknown backbone 'vgg'; known: resnet18, vgg16"
    """
    return ConfigError(f"unknown {kind} {value!r}; known: {', '.join(sorted(known))}")


def listing(lines: Sequence[str], limit: int = 30) -> str:
    """``lines`` indented one per line for an error message, at most ``limit`` of them, then how many more.

    >>> print(listing(["a.jpg", "b.jpg", "c.jpg"], limit=2))
      a.jpg
      b.jpg
      ... and 1 more
    """
    more = [f"... and {len(lines) - limit} more"] if len(lines) > limit else []
    return "\n".join(f"  {line}" for line in [*lines[:limit], *more])
