"""A registry of named builders that packages can extend through an entry-point group.

The pattern of torchvision's ``register_model`` / ``get_model``: built-ins register with a
decorator, other packages through ``[project.entry-points."<group>"]`` in their
``pyproject.toml``; ``build`` checks the keyword arguments against the builder's signature
and the product's type, so a wrong option is one clear :class:`ConfigError`::

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
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import ConfigError, unknown_choice

T = TypeVar("T")
_F = TypeVar("_F", bound=Callable[..., Any])
log = logging.getLogger(__name__)


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
        if self.plugins_loaded:
            return
        self.plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self.builders:
                continue
            try:
                self.builders[ep.name] = ep.load()
            except Exception as err:  # a broken plug-in must not break the built-ins
                log.warning("could not load %s plug-in %r (%s): %s", self.kind, ep.name, ep.value, err)

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


__all__ = ["PluginRegistry"]
