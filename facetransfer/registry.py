"""Plug-ins from other packages: Python entry points added to facetransfer's registries.

Backbones (``facetransfer.backbones``), strategies (``facetransfer.strategies``) and face
detectors (``facetransfer.detectors``) are found the same way; a plug-in that fails to import is
logged and skipped, never fatal for the built-ins::

    >>> registry = {}
    >>> load_entry_points("facetransfer.no_such_group", registry, lambda name, obj: obj)
    >>> registry
    {}

:class:`PluginRegistry` is the pattern of torchvision's ``register_model`` / ``get_model`` for
named builders: built-ins register with a decorator, other packages through
``[project.entry-points."<group>"]`` in their ``pyproject.toml``; ``build`` checks the keyword
arguments against the builder's signature and the product's type, so a wrong option is one clear
:class:`~facetransfer.errors.ConfigError`::

    >>> shapes = PluginRegistry("shape", "example.shapes", tuple)
    >>> @shapes.register("square")
    ... def square(side: int = 1):
    ...     return (side, side)
    >>> shapes.build("square", side=3)
    (3, 3)
    >>> shapes.build("circle")
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: unknown shape 'circle'; known: square
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, MutableMapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import ConfigError, unknown_choice

log = logging.getLogger(__name__)
T = TypeVar("T")
_F = TypeVar("_F", bound=Callable[..., Any])


def load_entry_points(group: str, registry: MutableMapping[str, T], convert: Callable[[str, Any], T]) -> None:
    """Add each entry point of ``group`` that ``registry`` does not hold yet, as ``convert(name, loaded)``."""
    for ep in entry_points(group=group):
        if ep.name in registry:
            continue
        try:
            registry[ep.name] = convert(ep.name, ep.load())
        except Exception as err:  # a broken plug-in must not break the built-ins
            log.warning("could not load %s plug-in %r (%s): %s", group, ep.name, ep.value, err)


class PluginRegistry(Generic[T]):
    """Builders of ``product`` objects by name.

    Args:
        kind: what the products are called in messages (``"face detector"``).
        group: the entry-point group other packages add builders to.
        product: the class every builder must return.
    """

    def __init__(self, kind: str, group: str, product: type[T]) -> None:
        self.kind = kind
        self.group = group
        self.product = product
        self.builders: dict[str, Callable[..., T]] = {}
        self.plugins_loaded = False

    def register(self, name: str | None = None) -> Callable[[_F], _F]:
        """Decorator adding a builder under ``name`` (default: its own name)."""

        def wrapper(fn: _F) -> _F:
            key = name or fn.__name__
            if key in self.builders and self.builders[key] is not fn:
                raise ValueError(f"a {self.kind} named {key!r} is already registered")
            self.builders[key] = fn
            return fn

        return wrapper

    def _load_plugins(self) -> None:
        if not self.plugins_loaded:
            self.plugins_loaded = True
            load_entry_points(self.group, self.builders, lambda name, builder: builder)

    def names(self) -> list[str]:
        """All registered names, plug-ins included, sorted."""
        self._load_plugins()
        return sorted(self.builders)

    def builder(self, name: str) -> Callable[..., T]:
        self._load_plugins()
        try:
            return self.builders[name]
        except KeyError:
            raise unknown_choice(self.kind, name, self.builders) from None

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the builder of ``name`` with ``kwargs`` (checked against its signature) and check the result."""
        builder = self.builder(name)
        try:
            inspect.signature(builder).bind(**kwargs)
        except TypeError as err:
            params = ", ".join(inspect.signature(builder).parameters)
            raise ConfigError(f"{self.kind} {name!r}: {err}; it accepts: {params}") from None
        product = builder(**kwargs)
        if not isinstance(product, self.product):
            raise ConfigError(
                f"{self.kind} builder {name!r} returned {type(product).__name__}, "
                f"expected a facetransfer {self.product.__name__}"
            )
        return product


__all__ = ["PluginRegistry", "load_entry_points"]
