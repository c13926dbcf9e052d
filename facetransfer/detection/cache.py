"""Detections on disk, keyed by image content and detector, so each image is detected once.

One SQLite table ``(SHA-256 of the file's bytes, FaceDetector.cache_id) -> detections as JSON``, safe for
concurrent readers and writers (DataLoader workers, several runs); see docs/alignment.md::

    >>> cache = LandmarkCache(":memory:")
    >>> cache.put_many("mtcnn-v1-abc", {"d41d8c": Detections.empty()})
    >>> len(cache.get_many("mtcnn-v1-abc", ["d41d8c", "other"]))
    1
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from PIL import Image

from ..errors import ConfigError
from .detector import Detections

CACHE_FILENAME = "landmarks.sqlite"
_SQL_BATCH = 500  # SQLite's limit on bound variables is 999 in old builds


def default_cache_dir() -> Path:
    """``$FACETRANSFER_CACHE_DIR``, else ``$XDG_CACHE_HOME/facetransfer``, else ``~/.cache/facetransfer``."""
    if os.environ.get("FACETRANSFER_CACHE_DIR"):
        return Path(os.environ["FACETRANSFER_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facetransfer"


def content_hash(data: bytes) -> str:
    """SHA-256 of an image file's bytes (hex)."""
    return hashlib.sha256(data).hexdigest()


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


class LandmarkCache:
    """A SQLite table of detections keyed by ``(content hash, detector id)``.

    Args:
        path: the database file (created with its folder), or ``":memory:"``.

    Each process (and thread) opens its own connection on first use, so the object can be handed to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self._local = threading.local()
        self._memory_conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"LandmarkCache({self.path!r})"

    def __reduce__(self) -> tuple:
        return type(self), (self.path,)  # pickled as its path: each process opens its own connections

    def _connect(self) -> sqlite3.Connection:
        if self.path == ":memory:":  # one shared in-memory database per object
            self._memory_conn = self._memory_conn or self._open()
            return self._memory_conn
        if getattr(self._local, "pid", None) != os.getpid():  # a connection per thread, a new one after a fork
            self._local.conn, self._local.pid = self._open(), os.getpid()
        return self._local.conn

    def _open(self) -> sqlite3.Connection:
        memory = self.path == ":memory:"
        try:
            if not memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            # switching a new file to WAL does not wait for other connections (no busy handler): one at a time
            with nullcontext() if memory else FileLock(f"{self.path}.lock", timeout=60):
                self._set_up(conn)
        except (sqlite3.Error, OSError, Timeout) as err:
            raise ConfigError(f"cannot open the landmark cache {self.path}: {err}; set FACETRANSFER_CACHE_DIR to a "
                              "writable folder or use cache=None") from None
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        if self.path != ":memory:" and conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS detections (digest TEXT NOT NULL, detector TEXT NOT NULL, "
            "faces TEXT NOT NULL, PRIMARY KEY (digest, detector))"
        )
        conn.commit()

    def get_many(self, detector_id: str, digests: Iterable[str]) -> dict[str, Detections]:
        """The cached detections of those ``digests`` that are in the cache."""
        digests = list(dict.fromkeys(digests))
        found: dict[str, Detections] = {}
        conn = self._connect()
        for start in range(0, len(digests), _SQL_BATCH):
            chunk = digests[start : start + _SQL_BATCH]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT digest, faces FROM detections WHERE detector = ? AND digest IN ({marks})"
            for digest, faces in conn.execute(query, [detector_id, *chunk]):
                found[digest] = Detections.from_dict(json.loads(faces))
        return found

    def put_many(self, detector_id: str, items: Mapping[str, Detections]) -> None:
        """Store detections (replacing older rows of the same image and detector)."""
        if not items:
            return
        conn = self._connect()
        rows = [(digest, detector_id, json.dumps(faces.to_dict())) for digest, faces in items.items()]
        with conn:
            conn.executemany("INSERT OR REPLACE INTO detections (digest, detector, faces) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM detections").fetchone()[0])


__all__ = ["CACHE_FILENAME", "LandmarkCache", "content_hash", "default_cache_dir", "pixels_hash"]
