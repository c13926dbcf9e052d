"""The sections of a sweep method (``model:``, ``trainer:``, ``data:``, ``logreg:`` ...), each typed and
checked against the signature it configures, and the keys a sweep sets itself.

    >>> from facetransfer.strategies.sections import parse_section
    >>> def solver(C: float = 1.0, max_iter: int = 100): ...
    >>> parse_section(solver, {"C": "0.5"}, "methods[0].logreg")
    {'C': 0.5}
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config_errors import config_error
from ..errors import ConfigError

# the keys a sweep sets itself, per section, with what to write instead
MANAGED_MODEL_KEYS = {
    "backbone": "set each method's backbone:",
    "weights": "set each method's weights:",
    "weights_path": "set each method's weights_path:",
    "class_names": "the identities come from the data",
    "features": "the sweep's feature store serves frozen features",
}
MANAGED_TRAINER_KEYS = {
    "logger": "each cell logs to TensorBoard under <output_dir>/logs",
    "callbacks": "cells use facetransfer's default callbacks (best checkpoint by val/acc)",
    "default_root_dir": "cells write under <output_dir>/logs",
}
MANAGED_DATA_KEYS = {
    "train_samples": "set the top-level train_samples list",
    "seed": "set the top-level seeds list",
    "split_manifest": "a sweep builds its own split per seed",
    "predict_root": "a sweep does not predict",
    "preprocess": "each method's backbone decides the preprocessing (use model.input_size)",
    "features": "the sweep's feature store serves frozen features",
}
#: the shared model section of a sweep also leaves the freeze policy to each method's strategy
MANAGED_SHARED_MODEL_KEYS = {
    **MANAGED_MODEL_KEYS,
    "freeze": "each method's strategy sets it (where a strategy lets you choose: methods[i].model.freeze)",
}


def slug(text: str) -> str:
    """``text`` as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "method"


def plain(value: Any) -> Any:
    """JSON-comparable copy (tuples -> lists, paths -> strings)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def section_parser(**kwargs: Any):
    from lightning.pytorch.cli import LightningArgumentParser

    return LightningArgumentParser(exit_on_error=False, allow_abbrev=False, **kwargs)


def parse_section(target: Callable[..., Any], values: Mapping[str, Any], where: str, skip: set[str] = frozenset()) -> dict[str, Any]:
    """Check ``values`` against the keyword arguments of ``target`` (a class or function) -> the typed values."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys, got {values!r}")
    parser = section_parser()
    if isinstance(target, type):
        parser.add_class_arguments(target, skip=set(skip), fail_untyped=False)
    else:
        parser.add_function_arguments(target, skip=set(skip), fail_untyped=False)
    try:
        parsed = parser.parse_object(dict(values), defaults=False)
    except (argparse.ArgumentError, TypeError, ValueError) as err:
        raise config_error(err, where, {"": list(parser.get_defaults().keys())}) from None
    out = plain(parsed.as_dict())  # jsonargparse's typed values (PositiveInt ...) as plain Python
    return {k: out[k] for k in values}


@dataclass(frozen=True)
class Section:
    """A mapping a method of a strategy may hold (``model:``, ``logreg:`` ...), checked against a signature.

    Args:
        key: the section's name in a method.
        doc: what it configures (shown by ``facetransfer strategies``).
        target: returns the class or function whose keyword arguments the section accepts.
        only: accept just these of its arguments (None: all).
        managed: arguments the sweep sets itself, with what to do instead.
        preset: values the section starts from (a method's own values override them).
    """

    key: str
    doc: str
    target: Callable[[], Callable[..., Any]]
    only: tuple[str, ...] | None = None
    managed: Mapping[str, str] = field(default_factory=dict)
    preset: Mapping[str, Any] = field(default_factory=dict)

    def check(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``values`` typed and checked (unknown or managed keys, wrong types) -> the given values."""
        for key in values:
            if key in self.managed:
                raise ConfigError(f"{where}.{key} cannot be set in a sweep: {self.managed[key]}")
            if self.only is not None and key not in self.only:
                raise ConfigError(f"{where}.{key}: this strategy's {self.key} accepts {', '.join(self.only)}")
        return parse_section(self.target(), {**self.preset, **values}, where, skip=set(self.managed))


__all__ = ["MANAGED_DATA_KEYS", "MANAGED_MODEL_KEYS", "MANAGED_SHARED_MODEL_KEYS", "MANAGED_TRAINER_KEYS", "Section",
           "parse_section", "plain", "section_parser", "slug"]
