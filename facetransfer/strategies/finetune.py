"""``finetune``: a pretrained backbone whose first stages stay frozen while the rest and a new head learn.

Its recipe (``recipes/finetune.yaml``: a standardised head at a per-feature rate, pretrained stages at
a rate relative to their weights' size) says how it was chosen.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import register_strategy
from .lightning import LightningStrategy
from .sections import dotted


@register_strategy
class Finetune(LightningStrategy):
    """Pretrained backbone, first stages frozen (first:2 unless model.freeze says), the rest trained."""

    name = "finetune"
    plot_style = ("-", "o")
    default_freeze = "first:2"

    def check_freeze(self, policy: str, where: str) -> None:
        if policy == "all":
            raise ConfigError(f"{dotted(where, 'model.freeze')}: 'all' freezes every stage; that is strategy linear_probe")
