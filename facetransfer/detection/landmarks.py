"""Landmarks that come with a dataset (CelebA's five points), used instead of a detector.

A :class:`LandmarkTable` maps an image key to its five points (same order as the detectors: left eye, right eye, nose,
left and right mouth corner, in the image's pixels). The :class:`~.aligner.Aligner` asks it before (or instead of)
running a detector. Keys are matched as given (a source's key, e.g. ``img_celeba/000001.jpg``), else by file name::

    >>> table = LandmarkTable({"000001.jpg": [[1, 2], [3, 2], [2, 3], [1, 4], [3, 4]]}, name="demo")
    >>> table.lookup("img_celeba/000001.jpg").landmarks.shape
    torch.Size([1, 5, 2])
    >>> table.lookup("000002.jpg") is None
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import ConfigError
from .detector import Detections

#: pixels a box derived from landmarks extends beyond them, as a fraction of their spread
_BOX_MARGIN = 0.6


def box_around(points: torch.Tensor) -> torch.Tensor:
    """A face box ``(4,)`` around five landmarks ``(5, 2)`` (for the largest-face policy and CSVs)."""
    low, high = points.min(dim=0).values, points.max(dim=0).values
    spread = (high - low).max().clamp(min=1.0)
    return torch.cat([low - _BOX_MARGIN * spread, high + _BOX_MARGIN * spread])


class LandmarkTable:
    """Known five-point landmarks per image key.

    Args:
        points: ``key -> 5 [x, y] pairs``.
        name: what the table is called in descriptions and cache ids (e.g. ``celeba-wild``).
        source: the file the points were read from (for messages).
    """

    def __init__(self, points: Mapping[str, Sequence[Sequence[float]]], name: str, source: str | None = None) -> None:
        self.name = name
        self.source = source
        self._points = {k: torch.as_tensor(v, dtype=torch.float32).reshape(5, 2) for k, v in points.items()}
        self._by_name = {os.path.basename(k): k for k in self._points}

    def __len__(self) -> int:
        return len(self._points)

    def lookup(self, key: str) -> Detections | None:
        """The image's landmarks as one detection (score 1), or ``None`` when the table does not list it."""
        resolved = key if key in self._points else self._by_name.get(os.path.basename(key))
        points = self._points.get(resolved)  # type: ignore[arg-type]
        return None if points is None else Detections(box_around(points)[None], points[None].clone(), torch.ones(1))

    @classmethod
    def from_source(cls, source: Any) -> LandmarkTable:
        """The landmarks a data source ships (``landmark_points()``, e.g. CelebA's), named
        ``<dataset>-<variant>``; :class:`ConfigError` for a source without landmarks."""
        if not callable(getattr(source, "landmark_points", None)):
            raise ConfigError(f"align: landmarks needs a dataset that ships landmarks (celeba); {source.name!r} does "
                              "not: use align: mtcnn")
        variant = getattr(source, "variant", None)
        name = f"{source.name}-{variant}" if variant else source.name
        where = source.landmark_file() if callable(getattr(source, "landmark_file", None)) else None
        return cls(source.landmark_points(), name=name, source=str(where) if where else None)

    def describe(self) -> dict:
        return {"landmarks": self.name, "source": self.source, "images": len(self)}


__all__ = ["LandmarkTable", "box_around"]
