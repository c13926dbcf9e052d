"""The face-detector registry, like the backbone registry (torchvision's ``get_model``).

Built-in detectors register with :func:`register_detector`; other packages add theirs through the
``facetransfer.detectors`` entry-point group, whose value is a builder (a callable returning a
:class:`~.detector.FaceDetector`, taking at least ``weights`` and ``device``)::

    # pyproject.toml of a plug-in package
    [project.entry-points."facetransfer.detectors"]
    my_detector = "my_package.detectors:my_detector"

    >>> "mtcnn" in list_detectors()
    True
    >>> get_detector("mtcnn", weights=None).name  # random weights: for tests
    'mtcnn'
"""

from __future__ import annotations

from ..registry import Registry
from .detector import FaceDetector

ENTRY_POINT_GROUP = "facetransfer.detectors"
DETECTORS: Registry[FaceDetector] = Registry("face detector", ENTRY_POINT_GROUP, FaceDetector)
register_detector = DETECTORS.register
list_detectors = DETECTORS.names
get_detector = DETECTORS.build

__all__ = ["DETECTORS", "ENTRY_POINT_GROUP", "get_detector", "list_detectors", "register_detector"]
