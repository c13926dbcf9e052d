"""Cached pretrained weights are checked against their published hash before they are used.

The first time a cached file is used its SHA-256 is compared with the prefix in its name (torchvision's
``mobilenet_v2-b0353104.pth``) or its registered hash; the result is remembered with the file's size,
modification time and inode in ``.facetransfer-verified.json`` next to it, so later uses cost one ``stat``
(docs/reliability.md). A file that does not match is refused with one line naming it::

    >>> verify_cached_file(hub_checkpoint_dir() / "mobilenet_v2-b0353104.pth")  # doctest: +SKIP
    >>> # after a bit flip: WeightsError: cached weights file .../mobilenet_v2-b0353104.pth is damaged: ...

Importers that verify a file by other means (the face-api converter checks the tensors) call :func:`remember_verified`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import FaceTransferError, WeightsError
from ..io.atomic import atomic_write

RECORD_NAME = ".facetransfer-verified.json"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torchvision's check_hash convention
_checked_here: dict[str, tuple[int, int, int]] = {}  # verified in this process: path -> stat key


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def name_hash(filename: str) -> str | None:
    """The SHA-256 prefix a file name carries (``resnet18-f37072fd.pth`` -> ``f37072fd``), else None."""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _records(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if isinstance(data, dict) and data.get("version") == 1 else {}


def remember_verified(path: str | os.PathLike, sha256: str) -> None:
    """Record that ``path``, as it is now, has the SHA-256 ``sha256`` (best effort: a read-only cache
    folder is checked again next time)."""
    path = Path(path)
    key = _stat_key(path)
    _checked_here[str(path)] = key
    records = _records(path.parent)
    records[path.name] = {"size": key[0], "mtime_ns": key[1], "inode": key[2], "sha256": sha256}
    try:
        with atomic_write(path.parent / RECORD_NAME) as fh:
            json.dump({"version": 1, "files": records}, fh, indent=1, sort_keys=True)
    except FaceTransferError:  # a read-only cache: nothing to remember, the check repeats next time
        pass


def is_remembered(path: str | os.PathLike) -> bool:
    """True when ``path`` was verified as it is now (same size, modification time and inode)."""
    path = Path(path)
    key = _stat_key(path)
    if _checked_here.get(str(path)) == key:
        return True
    record = _records(path.parent).get(path.name)
    return isinstance(record, dict) and (record.get("size"), record.get("mtime_ns"), record.get("inode")) == key


def verify_cached_file(path: str | os.PathLike, expected: str | None = None) -> Path:
    """Check a cached weights file against ``expected`` (a full SHA-256 or a prefix; default: the
    hash in its name) once; raise :class:`WeightsError` naming the file and the fix when it differs.
    A file whose name carries no hash and that has no ``expected`` hash is not checked."""
    path = Path(path)
    expected = (expected or name_hash(path.name) or "").lower()
    if not expected or is_remembered(path):
        return path
    digest = sha256_of(path)
    if not digest.startswith(expected):
        raise WeightsError(
            f"cached weights file {path} is damaged: its sha256 starts with {digest[: len(expected)]}, expected "
            f"{expected}; re-import a good copy with: facetransfer weights import /path/to/{path.name} --force "
            "(or delete the file to download it again)"
        )
    remember_verified(path, digest)
    return path


__all__ = ["RECORD_NAME", "is_remembered", "name_hash", "remember_verified", "sha256_of", "verify_cached_file"]
