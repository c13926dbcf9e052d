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
    # fresh head otherwise), head at 1e-2 x 128 / feature size (1e-2 for dlib's 128-d descriptor,
    # 1e-3 for MobileNetV2's 1,280-d features); pretrained stages move by 2e-3 of their weights' RMS
    # per step (dlib's ResNet has ~15x smaller weights than MobileNetV2: an absolute rate destroys its
    # features; 2e-3 beat 1e-3 on both networks at N = 250 and 500); all epochs of the run, the
    # best-val checkpoint tested (no early stopping: with one validation image per identity, val/acc
    # stalls by chance -- MobileNetV2 at N = all stopped at epoch 12 with 74.3 %, 78.8 % after 20).
    # Chosen on lfw-devtrain, see docs/reproducing.md.
    defaults = {
        "model": {"head_norm": True, "lr": 1e-2, "head_lr_per_feature": True, "backbone_lr": 2e-3,
                  "backbone_lr_relative": True},
    }

    def check_freeze(self, policy: str, where: str) -> None:
        if policy == "all":
            raise ConfigError(f"{where}.model.freeze: 'all' freezes every stage; that is strategy linear_probe")
