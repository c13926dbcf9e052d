"""Package attributes imported on first use (PEP 562), so light commands skip heavy imports.

    >>> __getattr__ = lazy_attributes(__name__, {"FaceClassifier": "module"})  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<exports[name]>`` and returns its ``name``.

    ``exports`` maps a public name to its submodule, or to ``"submodule:attribute"`` when the
    attribute is called differently there. The value is then kept in the package's namespace.
    """

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(f".{module}", package), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


__all__ = ["lazy_attributes"]
