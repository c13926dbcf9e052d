"""Backbone registry in the style of torchvision's ``register_model`` / ``get_model``.

Built-in backbones register with :func:`register_backbone`; third-party packages
add theirs through the ``facetransfer.backbones`` entry-point group, whose value
is a builder (a callable returning a :class:`Backbone`)::

    # pyproject.toml of a plug-in package
    [project.entry-points."facetransfer.backbones"]
    my_net = "my_package.backbones:my_net"

    >>> from facetransfer.models import list_backbones
    >>> "resnet50" in list_backbones()
    True
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from ..errors import ConfigError, unknown_choice
from .backbone import Backbone

ENTRY_POINT_GROUP = "facetransfer.backbones"

BackboneBuilder = Callable[..., Backbone]
_F = TypeVar("_F", bound=BackboneBuilder)
_BACKBONES: dict[str, BackboneBuilder] = {}
_plugins_loaded = False
log = logging.getLogger(__name__)


def register_backbone(name: str | None = None) -> Callable[[_F], _F]:
    """Decorator adding a backbone builder to the registry under ``name`` (default: its own name).

    The builder takes keyword arguments, at least ``weights`` (a torchvision weights
    name or ``None``) and ``weights_path`` (a local state dict or ``None``).
    """

    def wrapper(fn: _F) -> _F:
        key = name or fn.__name__
        if key in _BACKBONES and _BACKBONES[key] is not fn:
            raise ValueError(f"a backbone named {key!r} is already registered")
        _BACKBONES[key] = fn
        return fn

    return wrapper


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BACKBONES:
            continue
        try:
            _BACKBONES[ep.name] = ep.load()
        except Exception as err:  # a broken plug-in must not break the built-ins
            log.warning("could not load backbone plug-in %r (%s): %s", ep.name, ep.value, err)


def list_backbones() -> list[str]:
    """Names of all registered backbones, plug-ins included, sorted."""
    _load_plugins()
    return sorted(_BACKBONES)


def get_backbone_builder(name: str) -> BackboneBuilder:
    _load_plugins()
    try:
        return _BACKBONES[name]
    except KeyError:
        raise unknown_choice("backbone", name, _BACKBONES) from None


def get_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build the backbone registered as ``name``.

    >>> net = get_backbone("resnet18", weights=None)
    >>> net.num_features
    512
    """
    builder = get_backbone_builder(name)
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as err:
        params = ", ".join(inspect.signature(builder).parameters)
        raise ConfigError(f"backbone {name!r}: {err}; it accepts: {params}") from None
    backbone = builder(**kwargs)
    if not isinstance(backbone, Backbone):
        raise ConfigError(
            f"backbone builder {name!r} returned {type(backbone).__name__}, expected a facetransfer Backbone"
        )
    return backbone
