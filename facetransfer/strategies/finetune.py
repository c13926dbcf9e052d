"""``finetune``: a pretrained backbone whose first stages stay frozen while the rest and a new head learn."""

from __future__ import annotations

from ..errors import ConfigError
from .base import register_strategy
from .lightning import LightningStrategy


@register_strategy
class Finetune(LightningStrategy):
    """Pretrained weights, the first stages frozen (``first:2`` unless ``model.freeze`` says), the rest trained."""

    name = "finetune"
    plot_style = ("-", "o")
    summary = "pretrained backbone, first stages frozen (first:2 unless model.freeze says), the rest trained"
    default_freeze = "first:2"
    # standardised features before the new head (a face descriptor's small features barely move a
    # fresh head otherwise), head 1e-3 / pretrained layers 1e-4, stop when val/acc stalls for 5 epochs
    defaults = {
        "model": {"head_norm": True, "lr": 1e-3, "backbone_lr": 1e-4},
        "early_stopping": {"patience": 5},
    }

    def check_freeze(self, policy: str, where: str) -> None:
        if policy == "all":
            raise ConfigError(f"{where}.model.freeze: 'all' freezes every stage; that is strategy linear_probe")
