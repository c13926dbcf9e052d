"""Image files: reading any PIL-readable kind upright as 8-bit RGB, and listing the images of folders.

Grey (L, I;16, I, F), palette, CMYK, RGBA/LA (alpha composited on black) all
become RGB; 16-bit images are scaled to 8 bits rather than clipped::

    >>> from PIL import Image
    >>> to_rgb(Image.new("I;16", (4, 4), 65535)).getpixel((0, 0))
    (255, 255, 255)
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB without clipping high-bit-depth images."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file; a missing or unreadable file raises :class:`DataError` naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def decode_image(data: bytes, name: str | os.PathLike) -> Image.Image:
    """Image file bytes -> upright 8-bit RGB (EXIF orientation applied, as a phone's viewer shows it);
    a file PIL cannot decode raises :class:`DataError` naming it.

    >>> decode_image(b"", "a.jpg")
    Traceback (most recent call last):
    ...
    facetransfer.errors.DataError: cannot read image a.jpg: empty file (0 bytes)
    """
    if not data:
        raise DataError(f"cannot read image {name}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return to_rgb(ImageOps.exif_transpose(img) or img)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {name}: not a known image format") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {name}: {err}") from None


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """The one image reader of every path (training, predict, gallery, verify, align, export): the file
    decoded upright as 8-bit RGB (see :func:`decode_image`)."""
    return decode_image(read_image_bytes(path), path)


def natural_key(text: str) -> list:
    """Sort key putting ``2.pgm`` before ``10.pgm``.

    >>> sorted(["s10/1.pgm", "s2/10.pgm", "s2/9.pgm"], key=natural_key)
    ['s2/9.pgm', 's2/10.pgm', 's10/1.pgm']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def is_listed_file(entry: os.DirEntry) -> bool:
    """True for a file, and for an entry that cannot be followed (a symbolic link that points to itself):
    listed, its reader reports it instead of a traceback."""
    try:
        return entry.is_file()
    except OSError:
        return True


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link loop is no folder
        return False


def image_files_under(
    folder: str | os.PathLike, *, depth: int | None = None, every_file: bool = False, exclude: str | None = None
) -> list[Path]:
    """The image files under ``folder`` (at most ``depth`` levels down), hidden entries left out, in natural
    order folder by folder. ``every_file``: every file, not only images (a data source reports a stray file
    as a bad image); ``exclude``: a folder to leave out (its real path). Symbolic links to folders are
    followed, except one back to a folder above.

    >>> image_files_under("faces/")  # doctest: +SKIP
    [PosixPath('faces/alice/2.jpg'), PosixPath('faces/alice/10.jpg'), PosixPath('faces/bob/1.png')]
    """

    def walk(here: str, levels: int | None, above: frozenset[str]) -> Iterator[Path]:
        for entry in sorted(os.scandir(here), key=lambda e: natural_key(e.name)):
            if entry.name.startswith("."):
                continue
            if _is_folder(entry):
                real = os.path.realpath(entry.path)
                if levels != 1 and real not in above and real != exclude:
                    yield from walk(entry.path, None if levels is None else levels - 1, above | {real})
            elif is_listed_file(entry) and (every_file or is_image_name(entry.name)):
                yield Path(entry.path)

    return list(walk(os.fspath(folder), depth, frozenset({os.path.realpath(folder)})))


def identity_images(root: str | os.PathLike, every_file: bool = False) -> dict[str, list[Path]]:
    """``<root>/<identity>/<image>`` -> {identity: its image files}, both in natural order (see
    :func:`image_files_under`); files directly in ``root`` belong to nobody."""
    found: dict[str, list[Path]] = {}
    for path in image_files_under(root, depth=2, every_file=every_file):
        if path.parent != Path(root):
            found.setdefault(path.parent.name, []).append(path)
    return found


def list_image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files among ``paths``, in the given order; a folder contributes its image files
    at any depth (see :func:`image_files_under`). A missing path is a :class:`DataError`."""
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found += image_files_under(item)
        elif item.is_file():
            found.append(item)
        else:
            raise DataError(f"image file or folder {item} does not exist")
    if not found:
        raise DataError(f"no image files in {', '.join(map(str, paths)) or 'nothing'}")
    return found


def usable_cpus() -> int:
    """The CPU cores this process may use (its affinity on Linux)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_num_workers() -> int:
    """Processes reading images for a DataLoader: the CPUs this process may use, less one, at most 8."""
    return max(0, min(8, usable_cpus() - 1))


__all__ = [
    "IMAGE_EXTENSIONS", "decode_image", "default_num_workers", "identity_images", "image_files_under", "is_image_name",
    "is_listed_file", "list_image_files", "load_rgb", "natural_key", "read_image_bytes", "to_rgb", "usable_cpus",
]
