"""A :class:`~facetransfer.data.sources.FaceSource` whose images are aligned face chips.

:class:`AlignedSource` wraps any source: same records (keys, identities), but ``open(key)``
returns the :class:`~.aligner.Aligner`'s chip instead of the raw photo, and ``describe()``
records the alignment. Call :meth:`AlignedSource.find_faceless` once before training: it
detects every image (batched, cached on disk) and lists those without a face, for the
``on_bad_image`` policy::

    >>> from facetransfer.data import get_source
    >>> source = aligned_source(get_source("lfw", root="lfw-devtrain", variant="original"), "mtcnn")  # doctest: +SKIP
    >>> source.find_faceless([r.key for r in source.records()], progress=True)  # doctest: +SKIP
    [('lfw/Some_One/Some_One_0003.jpg', 'no face found in ...')]
    >>> source.open("lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg").size  # doctest: +SKIP
    (150, 150)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..detection.aligner import Aligner
from ..detection.landmarks import LandmarkTable
from ..detection.templates import FaceTemplate
from ..errors import DataError
from .sources import FaceRecord, FaceSource

#: ``align`` choices besides the registered detectors
ALIGN_NONE, ALIGN_LANDMARKS = "none", "landmarks"


class AlignedSource(FaceSource):
    """``source``'s images, aligned by ``aligner`` (same records, same keys)."""

    opens_files_as_they_are = False

    def __init__(self, source: FaceSource, aligner: Aligner) -> None:
        super().__init__(source.root)
        self.source = source
        self.aligner = aligner
        self.name = source.name  # type: ignore[misc]  (the dataset kind stays the wrapped one's)

    def records(self) -> list[FaceRecord]:
        return self.source.records()

    def path(self, key: str):
        return self.source.path(key)

    def init_args(self) -> dict[str, Any]:
        return self.source.init_args()

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "align": self.aligner.describe()}

    def open(self, key: str) -> Image.Image:
        """The aligned chip of ``key``; :class:`~.aligner.NoFaceError` / ``DataError`` when there is none."""
        if self.root is not None:  # file-backed: the aligner reads (and caches detections by) the file
            return self.aligner.align(self.source.path(key), key=key)
        return self.aligner.align(self.source.open(key), key=key)

    def find_faceless(self, keys: Sequence[str], progress: bool = False) -> list[tuple[str, str]]:
        """``(key, reason)`` for each image without a face (or unreadable), detecting all of them once."""
        keys = list(keys)
        if self.root is None:
            bad = []
            for key in keys:
                try:
                    self.aligner.locate(self.source.open(key), key=key)
                except DataError as err:  # unreadable, or NoFaceError: reported, not raised
                    bad.append((key, str(err)))
            return bad
        paths = [os.fspath(self.source.path(k)) for k in keys]
        prepared = self.aligner.prepare(paths, keys=keys, progress=progress)
        by_path = dict(zip(paths, keys))
        bad = [(by_path[p], why) for p, why in prepared.unreadable.items()]
        bad += [(by_path[p], self.aligner.no_face_message(p)) for p in prepared.faceless()]
        return sorted(bad)


def aligned_source(source: FaceSource, align: str = "mtcnn", template: str | FaceTemplate = "dlib",
                   size: int | None = None, **aligner_args: Any) -> FaceSource:
    """``source`` aligned by ``align``: ``none`` (unchanged), ``landmarks`` (the dataset's own, e.g.
    CelebA's), or a registered detector name (``mtcnn``). Further arguments go to :class:`Aligner`."""
    if align == ALIGN_NONE:
        return source
    if align == ALIGN_LANDMARKS:
        landmarks = LandmarkTable.from_source(source)
        return AlignedSource(source, Aligner(None, template, size, landmarks=landmarks, **aligner_args))
    return AlignedSource(source, Aligner(align, template, size, **aligner_args))


def alignment_choices() -> list[str]:
    """Values of an ``align`` option: ``none``, ``landmarks`` and the registered detectors."""
    from ..detection.registry import list_detectors

    return [ALIGN_NONE, ALIGN_LANDMARKS, *list_detectors()]


__all__ = ["ALIGN_LANDMARKS", "ALIGN_NONE", "AlignedSource", "aligned_source", "alignment_choices"]
