"""Face-detector registry in the style of the backbone registry (torchvision's ``get_model``).

Built-in detectors register with :func:`register_detector`; other packages add theirs
through the ``facetransfer.detectors`` entry-point group, whose value is a builder (a
callable returning a :class:`~.detector.FaceDetector`, taking at least ``weights`` and
``device``)::

    # pyproject.toml of a plug-in package
    [project.entry-points."facetransfer.detectors"]
    my_detector = "my_package.detectors:my_detector"

    >>> "mtcnn" in list_detectors()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..registry import PluginRegistry
from .detector import FaceDetector

ENTRY_POINT_GROUP = "facetransfer.detectors"
DETECTORS: PluginRegistry[FaceDetector] = PluginRegistry("face detector", ENTRY_POINT_GROUP, FaceDetector)
_F = TypeVar("_F", bound=Callable[..., FaceDetector])


def register_detector(name: str | None = None) -> Callable[[_F], _F]:
    """Decorator adding a detector builder to the registry under ``name`` (default: its own name)."""
    return DETECTORS.register(name)


def list_detectors() -> list[str]:
    """Names of all registered face detectors, plug-ins included, sorted."""
    return DETECTORS.names()


def get_detector_builder(name: str) -> Callable[..., FaceDetector]:
    return DETECTORS.builder(name)


def get_detector(name: str, **kwargs: Any) -> FaceDetector:
    """Build the face detector registered as ``name``.

    >>> detector = get_detector("mtcnn", weights=None)  # random weights: for tests
    >>> detector.name
    'mtcnn'
    """
    return DETECTORS.build(name, **kwargs)


__all__ = ["DETECTORS", "ENTRY_POINT_GROUP", "get_detector", "get_detector_builder", "list_detectors", "register_detector"]
