"""Cached pretrained weights are checked against their hash every time they are loaded.

The expected SHA-256 is the one an importer recorded in ``.facetransfer-verified.json`` next to the file (the
face-api converter checks the tensors it writes, whose file bytes depend on torch's version), else the file's
registered hash, else the prefix in its name (torchvision's ``mobilenet_v2-b0353104.pth``). Hashing 98 MB
(ResNet-50) takes about 0.06 s (docs/reliability.md), next to seconds of building the model. A file that does not match is refused with one line naming it::

    >>> verify_cached_file(hub_checkpoint_dir() / "mobilenet_v2-b0353104.pth")  # doctest: +SKIP
    >>> # after a bit flip: WeightsError: cached weights file .../mobilenet_v2-b0353104.pth is damaged: ...
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..errors import FaceTransferError, WeightsError
from ..io.atomic import atomic_write

RECORD_NAME = ".facetransfer-verified.json"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torchvision's check_hash convention


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    return file_digest(path, "sha256")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """The hex digest of a file's bytes by a ``hashlib`` algorithm, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(data: bytes, expected: str, what: str, origin: str) -> bytes:
    """``data`` when its SHA-256 is ``expected``, else :class:`WeightsError` naming ``what`` and its ``origin``."""
    if (digest := hashlib.sha256(data).hexdigest()) != expected.lower():
        raise WeightsError(f"{what} has the wrong hash: sha256 {digest}, expected {expected} ({origin}); the file is "
                           "corrupt or a different model")
    return data


def name_hash(filename: str) -> str | None:
    """The SHA-256 prefix a file name carries (``resnet18-f37072fd.pth`` -> ``f37072fd``), else None."""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def _recorded(folder: Path) -> dict[str, str]:
    """file name -> the SHA-256 its importer verified (records of earlier versions read too)."""
    try:
        files = json.loads((folder / RECORD_NAME).read_text()).get("files", {})
        return {name: str(record["sha256"]) for name, record in files.items()}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}


def remember_verified(path: str | os.PathLike, sha256: str) -> None:
    """Record that the importer verified ``path`` with SHA-256 ``sha256`` (best effort: without the record, a
    read-only cache folder checks against the registered hash)."""
    path = Path(path)
    records = {**_recorded(path.parent), path.name: sha256}
    try:
        with atomic_write(path.parent / RECORD_NAME) as fh:
            json.dump({"version": 2, "files": {k: {"sha256": v} for k, v in records.items()}}, fh, indent=1, sort_keys=True)
    except FaceTransferError:
        pass


def verify_cached_file(path: str | os.PathLike, expected: str | None = None) -> Path:
    """Hash ``path`` and compare with its recorded hash, else ``expected`` (a full SHA-256 or a prefix), else the
    hash in its name; raise :class:`WeightsError` naming the file and the fix when it differs. A file with
    none of these is not checked."""
    path = Path(path)
    expected = (_recorded(path.parent).get(path.name) or expected or name_hash(path.name) or "").lower()
    if expected and not (digest := sha256_of(path)).startswith(expected):
        raise WeightsError(
            f"cached weights file {path} is damaged: its sha256 starts with {digest[: len(expected)]}, expected "
            f"{expected}; re-import a good copy with: facetransfer weights import /path/to/{path.name} --force "
            "(or delete the file to download it again)"
        )
    return path


__all__ = ["RECORD_NAME", "check_sha256", "file_digest", "name_hash", "remember_verified", "sha256_of", "verify_cached_file"]
