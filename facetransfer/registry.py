"""One registry for every kind of plug-in: backbones, face detectors, strategies, data sources, freeze
policies, commands and weights importers.

The pattern of torchvision's ``register_model`` / ``get_model``: built-ins register with a decorator,
other packages through the entry-point group ``facetransfer.<kind, plural>`` in their ``pyproject.toml``
(loaded on the first lookup; a plug-in that fails to load is logged and skipped, never fatal for the
built-ins). :meth:`Registry.build` checks the keyword arguments against the builder's signature and the
product's type, so a wrong option is one clear :class:`~facetransfer.errors.ConfigError`::

    >>> shapes = Registry("shape", "example.shapes", tuple)
    >>> @shapes.register("square")
    ... def square(side: int = 1):
    ...     "A square of the given side."
    ...     return (side, side)
    >>> shapes.build("square", side=3)
    (3, 3)
    >>> shapes.names(), "square" in shapes, shapes.summary("square")
    (['square'], True, 'A square of the given side.')
    >>> shapes.build("circle")
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: unknown shape 'circle'; known: square
    >>> shapes.build("square", edge=3)
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: shape 'square': got an unexpected keyword argument 'edge'; it accepts: side
"""

from __future__ import annotations

import inspect
import logging
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from .errors import ConfigError, unknown_choice

log = logging.getLogger(__name__)
T = TypeVar("T")
_E = TypeVar("_E")


class Registry(Generic[T]):
    """Entries of one kind by name: builders (functions or classes) of ``product``, or plain entries
    (functions, ``"module:attribute"`` references imported on first use).

    Args:
        kind: what an entry is called in messages (``"face detector"``).
        group: the entry-point group other packages add entries to (``"facetransfer.detectors"``).
        product: what :meth:`build` must return; a registered class must subclass it, anything else
            must be a builder (callable) or a ``product`` itself.
        ordered: :meth:`names` in registration order (default: sorted).
        named: entries carry their key in a ``name`` attribute (strategy and data-source classes,
            whose instances report it); registering one under another key is an error.
        arguments: the option users write :meth:`build`'s keyword arguments under (``dataset_args``);
            a wrong key is then reported as that option's.
    """

    def __init__(self, kind: str, group: str, product: type[T] | None = None, *, ordered: bool = False,
                 named: bool = False, arguments: str | None = None) -> None:
        self.kind, self.group, self.product = kind, group, product
        self.ordered, self.named, self.arguments = ordered, named, arguments
        self.builders: dict[str, Any] = {}
        self.plugins_loaded = False

    @overload
    def register(self, name: str | None = None) -> Callable[[_E], _E]: ...

    @overload
    def register(self, name: _E) -> _E: ...

    def register(self, name: Any = None) -> Any:
        """Decorator adding an entry under ``name`` (default: its ``name`` attribute, else its ``__name__``);
        ``@registry.register`` without parentheses does the same. A second entry under a name is a ValueError."""
        if name is not None and not isinstance(name, str):  # used bare: @registry.register
            return self.register()(name)

        def wrapper(entry: _E) -> _E:
            own = getattr(entry, "name", None)
            key = name or (own if isinstance(own, str) and own else getattr(entry, "__name__", None))
            if not isinstance(key, str):
                raise TypeError(f"{entry!r} has no name to be registered under as a {self.kind}")
            self._add(key, entry)
            return entry

        return wrapper

    def _add(self, key: str, entry: Any) -> None:
        if not isinstance(entry, str):  # a "module:attribute" reference is imported, unchecked, on first use
            own = getattr(entry, "name", None)
            if self.named and own != key:
                raise ValueError(f"a {self.kind} is registered under its name: {entry!r} has name {own!r}, not {key!r}")
            product = self.product
            if product is not None and not (
                issubclass(entry, product) if isinstance(entry, type) else callable(entry) or isinstance(entry, product)
            ):
                raise TypeError(f"{entry!r} is not a facetransfer {product.__name__} (nor a builder of one)")
        if key in self.builders and self.builders[key] != entry:
            raise ValueError(f"a {self.kind} named {key!r} is already registered ({self.builders[key]!r})")
        self.builders[key] = entry

    def _load_plugins(self) -> None:
        if self.plugins_loaded:
            return
        self.plugins_loaded = True
        from importlib.metadata import entry_points  # not at import: start-up of the light commands

        for ep in entry_points(group=self.group):
            if ep.name not in self.builders:
                try:
                    self._add(ep.name, ep.load())
                except Exception as err:  # a broken plug-in must not break the built-ins
                    log.warning("could not load %s plug-in %r (%s): %s", self.group, ep.name, ep.value, err)

    def names(self) -> list[str]:
        """All registered names, plug-ins included (sorted, or in registration order when ``ordered``)."""
        self._load_plugins()
        return list(self.builders) if self.ordered else sorted(self.builders)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        if name not in self.builders:  # plug-ins are looked up only for a name the built-ins lack
            self._load_plugins()
        return name in self.builders

    def get(self, name: str) -> Any:
        """The entry registered as ``name`` (a reference imported now); a ConfigError listing the known ones."""
        if name not in self:
            raise unknown_choice(self.kind, name, self.builders)
        entry = self.builders[name]
        if isinstance(entry, str):
            entry = self.builders[name] = pkgutil.resolve_name(entry)
        return entry

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Call the builder of ``name``, its keyword arguments checked against its signature, and check the
        product (positional ``args`` are what the caller always passes, e.g. a data source's root)."""
        builder = self.get(name)
        signature = inspect.signature(builder)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as err:
            takes = list(signature.parameters)[len(args) :]
            unknown = [key for key in kwargs if key not in takes]
            if self.arguments and unknown:
                raise ConfigError(f"{self.kind} {name!r} does not take {self.arguments} {unknown[0]!r}; "
                                  f"it takes: {', '.join(takes) or 'none'}") from None
            raise ConfigError(f"{self.kind} {name!r}: {err}; it accepts: {', '.join(takes)}") from None
        product = builder(*args, **kwargs)
        if self.product is not None and not isinstance(product, self.product):
            raise ConfigError(f"{self.kind} builder {name!r} returned {type(product).__name__}, "
                              f"expected a facetransfer {self.product.__name__}")
        return product

    def summary(self, name: str) -> str:
        """One line about an entry: its ``summary`` attribute, else the first line of its docstring."""
        entry = self.get(name)
        return getattr(entry, "summary", "") or (entry.__doc__ or "").strip().split("\n")[0]


__all__ = ["Registry"]
