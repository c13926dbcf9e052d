"""The paper's from-scratch baseline: a small conv / max-pool / fully-connected CNN.

    >>> import torch
    >>> net = scratch_cnn()
    >>> net.forward_features(torch.zeros(2, 3, 112, 112)).shape
    torch.Size([2, 256])
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..errors import ConfigError
from ..preprocess import Preprocess
from .backbone import Backbone
from .registry import register_backbone
from .weights import load_backbone_weights


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register_backbone()
def scratch_cnn(
    weights: str | None = None, weights_path: str | None = None, widths: tuple[int, ...] = (32, 64, 128, 256),
    fc_features: int = 256, input_size: int = 112,
) -> Backbone:
    """Conv blocks (2x conv3x3-BN-ReLU + max-pool), global pooling, one hidden FC layer.

    It has no pretrained weights: ``weights`` must be ``None``; ``weights_path``
    loads an earlier facetransfer checkpoint of the same shape.
    """
    if weights:
        raise ConfigError(f"scratch_cnn has no pretrained weights (got weights={weights!r}); use weights: null")
    channels = zip((3, *widths), widths)  # (in, out) of each block
    stages = OrderedDict((f"block{i}", _conv_block(cin, cout)) for i, (cin, cout) in enumerate(channels, 1))
    stages["fc"] = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(widths[-1], fc_features), nn.ReLU(inplace=True), nn.Dropout(0.3)
    )
    pre = Preprocess(crop_size=input_size, resize_size=round(input_size * 8 / 7), mean=(0.5,) * 3, std=(0.5,) * 3)
    backbone = Backbone(stages, fc_features, pre, pool=nn.Identity())
    if weights_path:
        load_backbone_weights(backbone, weights_path, "scratch_cnn")
    return backbone
