"""A method of a sweep (``- {strategy: finetune, backbone: mobilenet_v2, model: {...}}``) resolved into a
:class:`~facetransfer.strategies.base.MethodSpec`: its strategy's sections checked, the shared sections,
the strategy's recipe and the method's own settings merged (later ones win).

    >>> from facetransfer.strategies import list_strategies
    >>> spec = resolve_method(0, {"strategy": list_strategies()[0], "backbone": "resnet18"}, {}, {})
    >>> spec.name == f"{spec.strategy}/resnet18"
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .base import MethodSpec, get_strategy, list_strategies

METHOD_KEYS = ("name", "strategy", "backbone", "weights", "weights_path")


def resolve_method(index: int, raw: Any, shared_model: Mapping[str, Any], shared_trainer: Mapping[str, Any]) -> MethodSpec:
    """One ``methods[i]`` entry -> a :class:`MethodSpec`, checked by its strategy's sections."""
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
    sections = {s.key: s for s in strategy.sections}
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
    if strategy.pretrained is False and (weights or weights_path):
        raise ConfigError(
            f"{where}: strategy {strategy.name} starts from random weights; remove weights/weights_path "
            f"(got {weights or weights_path!r}), or use a strategy that starts from pretrained weights"
        )

    shared = {"model": dict(shared_model), "trainer": dict(shared_trainer)}
    resolved: dict[str, dict[str, Any]] = {}
    for key, section in sections.items():
        if key not in ("model", "trainer", "data") and (
            (key not in raw and key not in strategy.defaults) or (key in raw and raw[key] in (None, False))
        ):
            continue  # an optional section left out, or turned off with `early_stopping: false`
        own = section.check(raw.get(key) or {}, f"{where}.{key}")
        inherited = {k: v for k, v in shared.get(key, {}).items() if section.only is None or k in section.only}
        base, recipe = strategy.cell_defaults.get(key, {}), strategy.defaults.get(key, {})
        resolved[key] = {**base, **inherited, **recipe, **own}
    model = resolved.pop("model", {})
    own_freeze = (raw.get("model") or {}).get("freeze")
    if own_freeze is not None:
        strategy.check_freeze(own_freeze, where)
    model["freeze"] = strategy.freeze or model.get("freeze", strategy.default_freeze)
    trainer = resolved.pop("trainer", {})
    data = resolved.pop("data", {})
    name = raw.get("name") or f"{strategy.name}/{backbone}"
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string, got {name!r}")
    return MethodSpec(name, strategy.name, backbone, weights, weights_path, model, trainer, data, resolved)


__all__ = ["METHOD_KEYS", "resolve_method"]
