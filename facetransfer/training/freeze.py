"""Freeze policies: which backbone stages learn, static for the whole run (docs/reference.md, "Freeze policies").

A policy is a short string that fits a YAML file and a checkpoint's hparams: ``none``, ``all`` (linear probe),
``first:K``, ``until:NAME`` (up to and including stage NAME) or ``stages:A,B``:

>>> from facetransfer.models import get_backbone
>>> net = get_backbone("resnet18")
>>> apply_freeze_policy(net, "until:layer2")
['stem', 'layer1', 'layer2']
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError, unknown_choice
from ..models.backbone import Backbone
from ..registry import Registry

#: a policy maps (its argument, the backbone's stage names) to the stages to freeze; ``name:ARG`` in a
#: config calls the policy registered as ``name`` with ``ARG``
FreezePolicy = Callable[[str, list[str]], list[str]]
FREEZE_POLICIES: Registry[FreezePolicy] = Registry("freeze policy", "facetransfer.freeze_policies")
register_freeze_policy = FREEZE_POLICIES.register
list_freeze_policies = FREEZE_POLICIES.names
_TAKE_AN_ARGUMENT = ("first", "until", "stages")


def _no_arg(name: str, arg: str) -> None:
    if arg:
        raise ConfigError(f"freeze policy {name!r} takes no argument (got {name}:{arg})")


@register_freeze_policy("none")
def _freeze_none(arg: str, stages: list[str]) -> list[str]:
    _no_arg("none", arg)
    return []


@register_freeze_policy("all")
def _freeze_all(arg: str, stages: list[str]) -> list[str]:
    _no_arg("all", arg)
    return list(stages)


@register_freeze_policy("first")
def _freeze_first(arg: str, stages: list[str]) -> list[str]:
    try:
        k = int(arg)
    except ValueError:
        raise ConfigError(f"freeze policy first:K needs an integer K, got {arg!r}") from None
    if not 0 <= k <= len(stages):
        raise ConfigError(f"freeze policy first:{k}: K must be in 0..{len(stages)} (stages: {', '.join(stages)})")
    return stages[:k]


@register_freeze_policy("until")
def _freeze_until(arg: str, stages: list[str]) -> list[str]:
    if arg not in stages:
        raise ConfigError(f"freeze policy until:{arg}: unknown stage {arg!r}; stages: {', '.join(stages)}")
    return stages[: stages.index(arg) + 1]


@register_freeze_policy("stages")
def _freeze_stages(arg: str, stages: list[str]) -> list[str]:
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in stages]
    if unknown or not names:
        raise ConfigError(f"freeze policy stages:{arg}: unknown stage(s) {unknown}; stages: {', '.join(stages)}")
    return names


def frozen_stages_for(policy: str, stage_names: list[str]) -> list[str]:
    """Resolve a policy string against a list of stage names."""
    name, _, arg = str(policy).partition(":")
    if name not in FREEZE_POLICIES:
        known = [f"{p}:ARG" if p in _TAKE_AN_ARGUMENT else p for p in FREEZE_POLICIES]
        raise unknown_choice("freeze policy", policy, known)
    return FREEZE_POLICIES.get(name)(arg, list(stage_names))


def apply_freeze_policy(backbone: Backbone, policy: str) -> list[str]:
    """Freeze ``backbone``'s stages as ``policy`` says; returns the frozen stage names."""
    names = frozen_stages_for(policy, backbone.stage_names)
    backbone.freeze_stages(names)
    return names
