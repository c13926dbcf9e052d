"""The three networks of MTCNN (Zhang et al., 2016): P-Net, R-Net and O-Net.

Layer names follow the published state dicts (``conv1``, ``prelu1``, ... ``dense6_3``), so the files load as they are.
Each net takes images scaled to about [-1, 1] and returns the face probability, the box offsets ``(dx1, dy1, dx2, dy2)``
as fractions of the box side and, for O-Net, the 5 landmarks as fractions of the box (``x1..x5`` then ``y1..y5``)::

    >>> import torch
    >>> prob, offsets = PNet()(torch.zeros(1, 3, 12, 12))
    >>> tuple(prob.shape), tuple(offsets.shape)
    ((1, 1, 1), (1, 4, 1, 1))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _flatten_transposed(x: torch.Tensor) -> torch.Tensor:
    """Flatten a ``(B, C, H, W)`` map in ``(W, H, C)`` order, the order the dense weights were trained with."""
    return x.permute(0, 3, 2, 1).flatten(1)


def _face_probability(logits: torch.Tensor) -> torch.Tensor:
    """Face-or-not logits in dimension 1 -> the face's probability."""
    return F.softmax(logits, dim=1)[:, 1]


class PNet(nn.Module):
    """Proposal net: fully convolutional, a 12x12 window per output cell (stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` -> face probability ``(B, H', W')`` and offsets ``(B, 4, H', W')``."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return _face_probability(self.conv4_1(x)), self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net: 24x24 crops -> face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3, 24, 24)`` -> probability ``(N,)`` and offsets ``(N, 4)``."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_transposed(x)))
        return _face_probability(self.dense5_1(x)), self.dense5_2(x)


class ONet(nn.Module):
    """Output net: 48x48 crops -> probability, box offsets and 5 landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(N, 3, 48, 48)`` -> probability ``(N,)``, offsets ``(N, 4)``, landmarks ``(N, 5, 2)`` in box units."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_transposed(x)))
        points = self.dense6_3(x).view(-1, 2, 5).transpose(1, 2)  # x1..x5, y1..y5 -> (N, 5, [x, y])
        return _face_probability(self.dense6_1(x)), self.dense6_2(x), points


__all__ = ["ONet", "PNet", "RNet"]
