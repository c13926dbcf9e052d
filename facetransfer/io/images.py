"""Image files: reading any PIL-readable kind as 8-bit RGB, and listing the images of folders.

Grey (L, I;16, I, F), palette, CMYK, RGBA/LA (alpha composited on black) all
become RGB; 16-bit images are scaled to 8 bits rather than clipped::

    >>> from PIL import Image
    >>> to_rgb(Image.new("I;16", (4, 4), 65535)).getpixel((0, 0))
    (255, 255, 255)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

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


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and convert an image; a bad file raises :class:`DataError` naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


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


__all__ = ["IMAGE_EXTENSIONS", "is_image_name", "list_image_files", "load_rgb", "natural_key", "to_rgb"]
