"""A method of a sweep (``- {strategy: finetune, backbone: mobilenet_v2, model: {...}}``) resolved into a
:class:`~facetransfer.strategies.base.MethodSpec` by its strategy: the shared sections, the strategy's
recipe and the method's own sections, a later one's keys over an earlier one's.

    >>> from facetransfer.strategies import list_strategies
    >>> spec = resolve_method(0, {"strategy": list_strategies()[0], "backbone": "resnet18"})
    >>> spec.name == f"{spec.strategy}/resnet18"
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .base import MethodSpec, get_strategy, list_strategies

METHOD_KEYS = ("name", "strategy", "backbone", "weights", "weights_path")


def resolve_method(index: int, raw: Any, *shared: Mapping[str, Any]) -> MethodSpec:
    """One ``methods[i]`` entry -> a :class:`MethodSpec`; ``shared``: the sweep's layers below the
    strategy's recipe (``{"model": {...}, "trainer": {...}}``), lowest first."""
    from ..models import list_backbones

    where = f"methods[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping (strategy, backbone, ...), got {raw!r}")
    if raw.get("strategy") is None:
        raise ConfigError(f"{where}.strategy is missing; known: {', '.join(list_strategies())}")
    try:
        strategy = get_strategy(str(raw["strategy"]))
    except ConfigError as err:
        raise ConfigError(f"{where}.strategy: {err}") from None
    sections = [s.key for s in strategy.sections]
    unknown = [k for k in raw if k not in METHOD_KEYS and k not in sections]
    if unknown:
        accepted = ", ".join(sorted([*METHOD_KEYS, *sections]))
        raise ConfigError(f"unknown key '{where}.{unknown[0]}'; a {strategy.name} method accepts: {accepted}")
    backbones = list_backbones()
    backbone = raw.get("backbone")
    if not isinstance(backbone, str) or not backbone:
        raise ConfigError(f"{where}.backbone is missing; known: {', '.join(backbones)}")
    if backbone not in backbones:
        raise ConfigError(f"{where}.backbone: unknown backbone {backbone!r}; known: {', '.join(backbones)}")
    weights, weights_path = raw.get("weights"), raw.get("weights_path")
    for key, value in (("weights", weights), ("weights_path", weights_path)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string or null, got {value!r}")
    strategy.check_weights(weights or weights_path, where)
    name = raw.get("name") or f"{strategy.name}/{backbone}"
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string, got {name!r}")
    resolved = strategy.settings({k: raw[k] for k in sections if k in raw}, shared, where)
    model, trainer, data = (resolved.pop(key, {}) for key in ("model", "trainer", "data"))
    return MethodSpec(name, strategy.name, backbone, weights, weights_path, model, trainer, data, resolved)


__all__ = ["METHOD_KEYS", "resolve_method"]
