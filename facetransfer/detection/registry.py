"""Face-detector registry in the style of the backbone registry (torchvision's ``get_model``).

Built-in detectors register with :func:`register_detector`; other packages add theirs
through the ``facetransfer.detectors`` entry-point group, whose value is a builder (a
callable returning a :class:`~.detector.FaceDetector`)::

    # pyproject.toml of a plug-in package
    [project.entry-points."facetransfer.detectors"]
    my_detector = "my_package.detectors:my_detector"

    >>> "mtcnn" in list_detectors()
    True
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from ..errors import ConfigError, unknown_choice
from .detector import FaceDetector

ENTRY_POINT_GROUP = "facetransfer.detectors"

DetectorBuilder = Callable[..., FaceDetector]
_F = TypeVar("_F", bound=DetectorBuilder)
_DETECTORS: dict[str, DetectorBuilder] = {}
_plugins_loaded = False
log = logging.getLogger(__name__)


def register_detector(name: str | None = None) -> Callable[[_F], _F]:
    """Decorator adding a detector builder to the registry under ``name`` (default: its own name).

    The builder takes keyword arguments, at least ``weights`` and ``device``.
    """

    def wrapper(fn: _F) -> _F:
        key = name or fn.__name__
        if key in _DETECTORS and _DETECTORS[key] is not fn:
            raise ValueError(f"a face detector named {key!r} is already registered")
        _DETECTORS[key] = fn
        return fn

    return wrapper


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _DETECTORS:
            continue
        try:
            _DETECTORS[ep.name] = ep.load()
        except Exception as err:  # a broken plug-in must not break the built-ins
            log.warning("could not load face-detector plug-in %r (%s): %s", ep.name, ep.value, err)


def list_detectors() -> list[str]:
    """Names of all registered face detectors, plug-ins included, sorted."""
    _load_plugins()
    return sorted(_DETECTORS)


def get_detector_builder(name: str) -> DetectorBuilder:
    _load_plugins()
    try:
        return _DETECTORS[name]
    except KeyError:
        raise unknown_choice("face detector", name, _DETECTORS) from None


def get_detector(name: str, **kwargs: Any) -> FaceDetector:
    """Build the face detector registered as ``name``.

    >>> detector = get_detector("mtcnn", weights=None)  # random weights: for tests
    >>> detector.name
    'mtcnn'
    """
    builder = get_detector_builder(name)
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as err:
        params = ", ".join(inspect.signature(builder).parameters)
        raise ConfigError(f"face detector {name!r}: {err}; it accepts: {params}") from None
    detector = builder(**kwargs)
    if not isinstance(detector, FaceDetector):
        raise ConfigError(
            f"face-detector builder {name!r} returned {type(detector).__name__}, expected a facetransfer FaceDetector"
        )
    return detector


__all__ = ["ENTRY_POINT_GROUP", "get_detector", "get_detector_builder", "list_detectors", "register_detector"]
