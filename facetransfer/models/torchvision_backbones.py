"""torchvision CNNs as :class:`Backbone` s: ResNet, VGG, MobileNetV2, EfficientNet.

Each builder takes ``weights`` (a torchvision weights name such as ``"IMAGENET1K_V1"`` or ``"DEFAULT"``; ``None`` for
random init) or ``weights_path`` (a local state dict in torchvision's or facetransfer's layout)::

    >>> net = resnet18()
    >>> net.stage_names
    ['stem', 'layer1', 'layer2', 'layer3', 'layer4']
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from torchvision import models as tvm

from ..errors import ConfigError
from ..preprocess import Preprocess
from .backbone import Backbone
from .registry import register_backbone
from .weights import cached_file, load_backbone_weights, load_into, load_state_dict_file, resolve_torchvision_weights

# the classifier layers each family replaces with facetransfer's own head
_HEAD_KEYS = {"resnet": ("fc.",), "vgg": ("classifier.6.",), "mobilenet_v2": ("classifier.",), "efficientnet": ("classifier.",)}


def _build(
    name: str, family: str, to_stages: Callable[[nn.Module], tuple[OrderedDict, int, nn.Module | None]],
    weights: str | None, weights_path: str | os.PathLike | None,
) -> Backbone:
    if weights and weights_path:
        raise ConfigError(f"{name}: give either weights={weights!r} or weights_path={weights_path!r}, not both")
    from torchvision import models as tvm  # here, not at import: see facetransfer.preprocess

    net = tvm.get_model(name, weights=None)
    preprocess = Preprocess()
    if weights:
        w = resolve_torchvision_weights(name, weights)
        path = cached_file(os.path.basename(w.url), w.url)
        load_into(net, load_state_dict_file(path), what=f"{path} ({name} {w.name})")
        t = w.transforms()
        preprocess = Preprocess(t.crop_size[0], t.resize_size[0], tuple(t.mean), tuple(t.std))
    stages, num_features, pool = to_stages(net)
    backbone = Backbone(stages, num_features, preprocess, pool=pool)
    if weights_path:
        load_backbone_weights(backbone, weights_path, name, source_net=net, source_head=_HEAD_KEYS[family])
    return backbone


def _resnet_stages(net: tvm.ResNet):
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = OrderedDict(stem=stem, layer1=net.layer1, layer2=net.layer2, layer3=net.layer3, layer4=net.layer4)
    return stages, net.fc.in_features, None


def _vgg_stages(net: tvm.VGG):
    stages, block = OrderedDict(), []
    for layer in net.features:
        block.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages[f"block{len(stages) + 1}"] = nn.Sequential(*block)
            block = []
    # fc6 + fc7 (4096-d, the classic VGG face descriptor); fc8 is replaced by the head
    stages["fc"] = nn.Sequential(net.avgpool, nn.Flatten(1), *list(net.classifier)[:-1])
    return stages, net.classifier[-1].in_features, nn.Identity()


def _mobilenet_v2_stages(net: tvm.MobileNetV2):
    f = net.features
    groups = {"stem": [0], "stage1": [1], "stage2": [2, 3], "stage3": [4, 5, 6], "stage4": [7, 8, 9, 10],
              "stage5": [11, 12, 13], "stage6": [14, 15, 16], "stage7": [17], "conv_last": [18]}
    stages = OrderedDict((k, nn.Sequential(*(f[i] for i in idx))) for k, idx in groups.items())
    return stages, net.last_channel, None


def _efficientnet_stages(net: tvm.EfficientNet):
    f = net.features
    stages = OrderedDict(stem=f[0], **{f"stage{i}": f[i] for i in range(1, len(f) - 1)}, conv_last=f[len(f) - 1])
    return stages, net.classifier[-1].in_features, None


def _register(name: str, family: str, to_stages, doc: str) -> None:
    def builder(weights: str | None = None, weights_path: str | None = None) -> Backbone:
        return _build(name, family, to_stages, weights, weights_path)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    register_backbone(name)(builder)
    globals()[name] = builder


for _name, _family, _fn, _doc in [
    ("resnet18", "resnet", _resnet_stages, "ResNet-18 (512-d features)."),
    ("resnet34", "resnet", _resnet_stages, "ResNet-34 (512-d features)."),
    ("resnet50", "resnet", _resnet_stages, "ResNet-50 (2048-d features), the paper's fine-tuning model."),
    ("vgg16", "vgg", _vgg_stages, "VGG-16 (4096-d fc7 features), the paper's feature-extraction model."),
    ("vgg16_bn", "vgg", _vgg_stages, "VGG-16 with BatchNorm (4096-d fc7 features)."),
    ("mobilenet_v2", "mobilenet_v2", _mobilenet_v2_stages, "MobileNetV2 (1280-d features)."),
    ("efficientnet_b0", "efficientnet", _efficientnet_stages, "EfficientNet-B0 (1280-d features)."),
]:
    _register(_name, _family, _fn, _doc)
