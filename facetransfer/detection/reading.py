"""Reading images for alignment: file bytes (hashed for the landmark cache) and upright RGB pixels.

    >>> decode_image(b"", "a.jpg")
    Traceback (most recent call last):
    ...
    facetransfer.errors.DataError: cannot read image a.jpg: empty file (0 bytes)
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from ..io.images import to_rgb


def decode_image(data: bytes, name: str) -> Image.Image:
    """Image file bytes -> upright 8-bit RGB (EXIF orientation applied); :class:`DataError` naming the file."""
    if not data:
        raise DataError(f"cannot read image {name}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            return to_rgb(upright if upright is not None else img)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {name}: not a known image format") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {name}: {err}") from None


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def pixels_hash(image: Image.Image | torch.Tensor) -> str:
    """Content hash of decoded pixels (inputs that are not files)."""
    digest = hashlib.sha256()
    if isinstance(image, Image.Image):
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    else:
        digest.update(f"{tuple(image.shape)}{image.dtype}".encode())
        digest.update(image.detach().cpu().contiguous().numpy().tobytes())
    return "pixels:" + digest.hexdigest()


__all__ = ["decode_image", "pixels_hash", "read_bytes"]
