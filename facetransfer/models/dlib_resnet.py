"""``dlib_resnet``: dlib's face-descriptor ResNet, pretrained on about 3 million faces.

A PyTorch port of dlib's ``dlib_face_recognition_resnet_model_v1`` (Davis E. King; public domain, CC0) as it ships,
converted to TensorFlow.js and uint8-quantised, in the npm package ``@vladmandic/face-api`` (Vladimir Mandic, MIT
licence; a fork of Vincent Mühler's face-api.js), following its ``src/faceRecognitionNet`` exactly. The 128-d output,
L2-normalised, is the dlib face descriptor: two faces are the same person when their distance is below about 0.6.

The weights have no fixed download address: ``facetransfer weights import`` converts them once from the npm
package (:data:`HOW_TO_GET`, :mod:`facetransfer.models.face_api_weights`)::

    >>> import torch
    >>> net = dlib_resnet()  # random init; dlib_resnet(weights="FACE_API") when imported
    >>> net.stage_names
    ['stem', 'stage32', 'stage64', 'stage128', 'stage256', 'embedding']
    >>> net.forward_features(torch.zeros(2, 3, 150, 150)).shape
    torch.Size([2, 128])
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..preprocess import Preprocess
from .backbone import Backbone
from .registry import register_backbone
from .weights import cached_file, load_backbone_weights

__all__ = ["HOW_TO_GET", "MEAN_RGB", "WEIGHTS_FILENAME", "dlib_resnet", "dlib_stages", "face_api_preprocess"]

#: face-api's ``meanRgb``; the input is ``(pixel - mean) / 255`` (dlib itself divides by 256)
MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SIZE = 150
#: the face-api release whose ``face_recognition_model.bin`` the weights are converted from
FACE_API_VERSION = "1.7.15"
#: SHA-256 of the converted file as ``torch.save`` writes it (torch 2.x zip format)
FILE_SHA256 = "24d0677b4cd69903c720a05e08ca60e9379eeca28a684e9a0d2277bd650d56dc"
#: the converted weights in the hub cache: ``dlib_resnet_face_api-<first 8 hex of FILE_SHA256>.pth``
WEIGHTS_FILENAME = f"dlib_resnet_face_api-{FILE_SHA256[:8]}.pth"
HOW_TO_GET = (
    f"create it from face-api's npm package (needs npm and network once): "
    f"npm pack @vladmandic/face-api@{FACE_API_VERSION} && "
    f"facetransfer weights import vladmandic-face-api-{FACE_API_VERSION}.tgz "
    f"(or copy {WEIGHTS_FILENAME} from another machine and run: "
    f"facetransfer weights import /path/to/{WEIGHTS_FILENAME})"
)

# after the stem: (channels, block name suffixes); "down" blocks halve the size (``conv64_down``, ``conv256_down_out``)
_LAYOUT = [(32, ["1", "2", "3"]), (64, ["down", "1", "2", "3"]), (128, ["down", "1", "2"]),
           (256, ["down", "1", "2", "down_out"])]


class Scale(nn.Module):
    """Per-channel affine ``x * weight + bias`` (dlib's ``affine`` layer, a frozen batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias[:, None, None], x, self.weight[:, None, None])


class ConvScale(nn.Module):
    """Conv (with bias) -> :class:`Scale` -> optional ReLU; ``stride=2`` means TF "valid" padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        # face-api: stride 1 -> "same" (symmetric for odd kernels), stride 2 -> "valid"
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0)
        self.scale = Scale(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale(self.conv(x))
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    """Two 3x3 :class:`ConvScale` s plus the identity, or for a down block a shortcut that is
    2x2 average-pooled and zero-padded to the new channel count (face-api's ``residualDown``)."""

    def __init__(self, cin: int, cout: int, down: bool = False) -> None:
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(cin, cout, 3, stride=2 if down else 1, relu=True)
        self.conv2 = ConvScale(cout, cout, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
            # a "valid" 3x3/2 conv loses one row/column on even sizes: pad bottom/right with zeros
            out = F.pad(out, (0, x.shape[-1] - out.shape[-1], 0, x.shape[-2] - out.shape[-2]))
            x = F.pad(x, (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))  # the shortcut's new channels are zeros
        return F.relu(out + x)


def dlib_stages() -> OrderedDict[str, nn.Module]:
    """The network's stages, randomly initialised: ``stem``, ``stage32`` ... ``stage256``, ``embedding``."""
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["stem"] = nn.Sequential(
        OrderedDict(conv32_down=ConvScale(3, 32, 7, stride=2, relu=True), pool=nn.MaxPool2d(3, 2))
    )
    cin = 32
    for width, suffixes in _LAYOUT:
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        for suffix in suffixes:
            blocks[f"conv{width}_{suffix}"] = Residual(cin, width, down=suffix.startswith("down"))
            cin = width
        stages[f"stage{width}"] = nn.Sequential(blocks)
    stages["embedding"] = nn.Sequential(
        OrderedDict(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(256, 128, bias=False))
    )
    return stages


def face_api_preprocess() -> Preprocess:
    """face-api's input: 150x150, ``(pixel - meanRgb) / 255`` (in [0, 1] units: mean/255, std 1)."""
    return Preprocess(
        crop_size=INPUT_SIZE, resize_size=INPUT_SIZE, mean=tuple(m / 255 for m in MEAN_RGB), std=(1.0, 1.0, 1.0),
        face_template="dlib",
    )


@register_backbone("dlib_resnet")
def dlib_resnet(weights: str | None = None, weights_path: str | os.PathLike | None = None) -> Backbone:
    """dlib's face-recognition ResNet (128-d descriptor), random or face-pretrained.

    Args:
        weights: ``None`` (random init) or ``"FACE_API"`` / ``"DEFAULT"``: dlib's
            weights from face-api, imported once with ``facetransfer weights import``.
        weights_path: a state dict in this backbone's layout (``stages.…`` keys), or a
            FaceClassifier checkpoint (``backbone.stages.…``); the head is ignored.

    Stages: ``stem`` (7x7/2 conv + max-pool), ``stage32``, ``stage64``, ``stage128``, ``stage256`` (residual blocks) and
    ``embedding`` (global average pool + the 256->128 fc layer); ``num_features`` is 128.
    """
    if weights and weights_path:
        raise ConfigError(f"dlib_resnet: give either weights={weights!r} or weights_path={weights_path!r}, not both")
    backbone = Backbone(dlib_stages(), 128, face_api_preprocess(), pool=nn.Identity())
    if weights:
        if weights.split(".")[-1].upper() not in ("FACE_API", "DEFAULT"):
            raise ConfigError(f"unknown weights {weights!r} for dlib_resnet; known: DEFAULT, FACE_API")
        weights_path = cached_file(WEIGHTS_FILENAME, how_to_get=HOW_TO_GET)  # checked against its hash
    if weights_path:
        load_backbone_weights(backbone, weights_path, "dlib_resnet")
    return backbone
