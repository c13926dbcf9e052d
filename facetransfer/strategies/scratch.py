"""``scratch``: the paper's baseline, a network trained from random weights, every layer learning."""

from __future__ import annotations

from .base import register_strategy
from .lightning import LightningStrategy


@register_strategy
class Scratch(LightningStrategy):
    """Random initialisation, every layer trained (the paper's baseline CNN)."""

    name = "scratch"
    plot_style = (":", "x")
    freeze = "none"
    pretrained = False
