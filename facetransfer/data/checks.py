"""Finding unreadable images before training starts.

Each image is opened and decoded in JPEG draft mode (at 1/8 scale, cheap), which
still reads the whole file, so truncated and corrupt files are caught, and so are files that
cannot be opened (a symbolic link that points to itself, no permission)::

    >>> find_bad_images(source, keys)  # doctest: +SKIP
    [('alice/3.jpg', 'image file is truncated')]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from ..io.filesystem import reason_of
from ..io.images import is_image_name
from .sources import FaceSource


def check_image_file(path: str | os.PathLike) -> str | None:
    """``None`` if the file decodes as an image, else the reason it does not."""
    name = os.fspath(path)
    try:
        if os.path.getsize(name) == 0:
            return "empty file (0 bytes)"
        with Image.open(name) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except Exception as err:  # PIL raises many types for bad files
        if isinstance(err, OSError) and err.errno is not None:  # the file itself cannot be read
            return reason_of(err)
        reason = str(err) or type(err).__name__
        return reason if is_image_name(name) else f"not an image file ({reason})"
    return None


def find_bad_images(source: FaceSource, keys: Iterable[str]) -> list[tuple[str, str]]:
    """``(key, reason)`` for each key of a file-backed source that cannot be decoded."""
    keys = list(keys)
    if source.root is None:  # generated data has no files
        return []
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool:
        reasons = pool.map(lambda k: check_image_file(source.path(k)), keys, chunksize=64)
        return [(k, r) for k, r in zip(keys, reasons) if r is not None]
