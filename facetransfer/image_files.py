"""Image files named on a command line: files as given, folders searched recursively.

    >>> list_image_files(["photos/", "door.jpg"])  # doctest: +SKIP
    [PosixPath('photos/a/1.jpg'), PosixPath('photos/a/2.jpg'), PosixPath('photos/b/10.png'), PosixPath('door.jpg')]
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from .data.images import is_image_name
from .errors import DataError


def natural_key(text: str) -> list:
    """Sort key putting ``2.pgm`` before ``10.pgm``.

    >>> sorted(["s10/1.pgm", "s2/10.pgm", "s2/9.pgm"], key=natural_key)
    ['s2/9.pgm', 's2/10.pgm', 's10/1.pgm']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def list_image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files among ``paths``, in the given order; a folder contributes its image files
    at any depth (hidden ones left out) in natural order. A missing path is a :class:`DataError`."""
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files = [
                p for p in item.rglob("*")
                if p.is_file() and is_image_name(p.name)
                and not any(part.startswith(".") for part in p.relative_to(item).parts)
            ]
            found += sorted(files, key=lambda p: natural_key(str(p.relative_to(item))))
        elif item.is_file():
            found.append(item)
        else:
            raise DataError(f"image file or folder {item} does not exist")
    if not found:
        raise DataError(f"no image files in {', '.join(map(str, paths)) or 'nothing'}")
    return found


__all__ = ["list_image_files", "natural_key"]
