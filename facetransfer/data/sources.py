"""Where face images come from: a small base class and thin per-layout subclasses.

A :class:`FaceSource` lists ``(key, identity)`` records and opens an image by key
(a path relative to ``root`` for file-backed sources). New layouts register with
:func:`register_source` and become a ``dataset:`` choice of the DataModule::

    >>> src = get_source("folder", root="tests/none")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from ..errors import DataError
from ..io.images import is_image_name, load_rgb
from ..registry import Registry


@dataclass(frozen=True, order=True)
class FaceRecord:
    """One image: its key (path relative to the source root) and its identity name."""

    identity: str
    key: str


class FaceSource:
    """Base class: a set of face images grouped by identity."""

    name: ClassVar[str] = "base"
    #: ``open(key)`` gives the pixels of the file at ``path(key)`` as they are (so a GPU decoder may read
    #: the file instead); False for sources that transform them, e.g. aligned faces
    opens_files_as_they_are: ClassVar[bool] = True

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None

    def records(self) -> list[FaceRecord]:
        """All images, sorted by identity then key. Called once per DataModule."""
        raise NotImplementedError

    def open(self, key: str) -> Image.Image:
        """The image for ``key`` as 8-bit RGB; :class:`DataError` naming the file if unreadable."""
        return load_rgb(self.path(key))

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments besides ``root`` (recorded so a checkpoint can rebuild the source)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What identifies this source in a manifest: kind, root (absolute, and as given), constructor arguments.

        The absolute root lets a checkpoint be tested from any working directory; the root as given
        is kept for the record (and used when the data moved along with a relative layout).
        """
        if self.root is None:
            return {"dataset": self.name, "root": None, "args": self.init_args()}
        return {
            "dataset": self.name,
            "root": str(self.root.resolve()),
            "root_as_given": str(self.root),
            "args": self.init_args(),
        }

    def _require_root(self) -> Path:
        if self.root is None:
            raise DataError(f"dataset {self.name!r} needs data.root (the folder holding the images)")
        if not self.root.is_dir():
            raise DataError(f"data root {self.root} does not exist or is not a folder")
        return self.root


def is_listed_file(entry: os.DirEntry) -> bool:
    """True for a file, and for an entry that cannot be followed (a symbolic link that points to itself):
    listed as an image, the image check reports it instead of a traceback."""
    try:
        return entry.is_file()
    except OSError:
        return True


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link loop is no identity folder
        return False


def _list_identity_folder(root: Path, base: Path) -> list[FaceRecord]:
    """Records for ``root/<identity>/<file>``; keys are relative to ``base``. Hidden files are ignored."""
    records = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not _is_folder(entry) or entry.name.startswith("."):
            continue
        for f in sorted(os.scandir(entry.path), key=lambda e: e.name):
            if is_listed_file(f) and not f.name.startswith("."):
                records.append(FaceRecord(entry.name, os.path.relpath(f.path, base)))
    return records


class FolderSource(FaceSource):
    """``<root>/<identity>/<image>`` in any PIL-readable format (JPEG, PNG, PGM ...).

    Every non-hidden file in an identity folder is an image record: a stray
    non-image file is reported as a bad image rather than silently ignored.
    """

    name = "folder"

    def records(self) -> list[FaceRecord]:
        root = self._require_root()
        records = _list_identity_folder(root, root)
        if not records:
            raise DataError(
                f"no identity folders with images under {root}; expected <root>/<identity>/<image> "
                "(e.g. faces/alice/1.jpg)"
            )
        return records


#: the DataModule's ``dataset`` choices: :class:`FaceSource` classes under their ``name``
SOURCES: Registry[FaceSource] = Registry(
    "dataset", "facetransfer.sources", FaceSource, named=True, arguments="dataset_args"
)
register_source = SOURCES.register
list_sources = SOURCES.names
register_source(FolderSource)


def get_source(name: str, root: str | os.PathLike | None = None, **dataset_args: Any) -> FaceSource:
    """The registered source ``name`` over ``root``; a ``dataset_args`` key it does not take is one
    :class:`~facetransfer.errors.ConfigError` listing those it does."""
    return SOURCES.build(name, root, **dataset_args)


__all__ = [
    "SOURCES", "FaceRecord", "FaceSource", "FolderSource", "get_source", "is_image_name", "list_sources",
    "register_source",
]
