"""Plug-ins from other packages: Python entry points added to facetransfer's registries.

Backbones (``facetransfer.backbones``) and strategies (``facetransfer.strategies``) are found
the same way; a plug-in that fails to import is logged and skipped, never fatal for the
built-ins::

    >>> registry = {}
    >>> load_entry_points("facetransfer.no_such_group", registry, lambda name, obj: obj)
    >>> registry
    {}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def load_entry_points(group: str, registry: MutableMapping[str, T], convert: Callable[[str, Any], T]) -> None:
    """Add each entry point of ``group`` that ``registry`` does not hold yet, as ``convert(name, loaded)``."""
    for ep in entry_points(group=group):
        if ep.name in registry:
            continue
        try:
            registry[ep.name] = convert(ep.name, ep.load())
        except Exception as err:  # a broken plug-in must not break the built-ins
            log.warning("could not load %s plug-in %r (%s): %s", group, ep.name, ep.value, err)


__all__ = ["load_entry_points"]
