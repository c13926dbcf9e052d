"""The face-detector interface: a batch of images in, per image boxes + 5 landmarks + scores out.

Images may be PIL images (any mode) or ``uint8`` tensors ``(C, H, W)`` (1 or 3 channels), of any size, or
one ``(B, C, H, W)`` tensor. Each image gives one :class:`Detections` in its pixel coordinates: the image
covers ``[0, W] x [0, H]`` and pixel ``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``. The landmarks
are :data:`LANDMARK_NAMES`, "left" meaning the image's left (a frontal face's right eye comes first)::

    >>> import torch
    >>> faces = Detections.empty()
    >>> len(faces), tuple(faces.landmarks.shape)
    (0, (0, 5, 2))
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import DataError
from ..io.images import to_rgb

ImageInput = Union[Image.Image, torch.Tensor]
#: the landmark order every detector returns
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Detections:
    """The faces found in one image, best first.

    Attributes:
        boxes: ``(N, 4)`` float32, ``x1, y1, x2, y2`` in pixels.
        landmarks: ``(N, 5, 2)`` float32, ``x, y`` of :data:`LANDMARK_NAMES`.
        scores: ``(N,)`` float32 detector confidence in [0, 1].
    """

    boxes: torch.Tensor
    landmarks: torch.Tensor
    scores: torch.Tensor

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4) or self.landmarks.shape != (n, 5, 2) or self.scores.shape != (n,):
            raise ValueError(f"inconsistent detections: boxes {tuple(self.boxes.shape)}, landmarks "
                             f"{tuple(self.landmarks.shape)}, scores {tuple(self.scores.shape)}")

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        return cls(torch.zeros(0, 4, device=device), torch.zeros(0, 5, 2, device=device), torch.zeros(0, device=device))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def scaled(self, factor: float) -> Detections:
        """Coordinates multiplied by ``factor`` (detections on a resized copy -> the original)."""
        return Detections(self.boxes * factor, self.landmarks * factor, self.scores)

    def rounded(self) -> Detections:
        """On the CPU, rounded as :meth:`to_dict` stores them: the same values whether fresh or cached."""
        return Detections.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, list]:
        """Plain lists (coordinates rounded to 1/100 px, scores to 5 digits), for JSON caches and CSV files."""
        digits = {"boxes": 2, "landmarks": 2, "scores": 5}
        return {k: np.round(getattr(self, k).detach().cpu().double().numpy(), d).tolist() for k, d in digits.items()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Detections:
        n = len(data["scores"])
        shapes = {"boxes": (n, 4), "landmarks": (n, 5, 2), "scores": (n,)}
        return cls(**{k: torch.tensor(data[k], dtype=torch.float32).reshape(shape) for k, shape in shapes.items()})


def image_to_tensor(image: ImageInput, device: torch.device | str | None = None) -> torch.Tensor:
    """A PIL image or ``uint8`` ``(C, H, W)`` tensor -> ``uint8`` ``(3, H, W)`` on ``device``.

    >>> image_to_tensor(Image.new("L", (5, 4))).shape
    torch.Size([3, 4, 5])
    """
    if isinstance(image, Image.Image):
        tensor = torch.from_numpy(np.array(to_rgb(image))).permute(2, 0, 1)
    else:
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise DataError(f"an image tensor must be (C, H, W) with 1 or 3 channels, got {tuple(image.shape)}")
        if image.dtype != torch.uint8:
            raise DataError(f"raw image tensors must be uint8, got {image.dtype}")
        tensor = image.expand(3, -1, -1)
    if tensor.shape[1] < 1 or tensor.shape[2] < 1:
        raise DataError(f"empty image of shape {tuple(tensor.shape)}")
    return tensor.to(device) if device is not None else tensor


def as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One image, a list of images, or a ``(B, C, H, W)`` tensor -> a list of single images."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images.unbind(0))
    items = list(images) if isinstance(images, Sequence) and not isinstance(images, (str, bytes)) else [images]
    for item in items:
        if not isinstance(item, (Image.Image, torch.Tensor)):
            kind = type(item).__name__
            raise DataError(f"cannot detect faces in a {kind}; give PIL images or uint8 (C, H, W) tensors")
    return items


def same_size_groups(images: Sequence[torch.Tensor], max_pixels: float = math.inf) -> list[list[int]]:
    """Indices of same-size ``(C, H, W)`` images, to be stacked into batches; an image over ``max_pixels`` alone."""
    groups: dict[object, list[int]] = {}
    for i, image in enumerate(images):
        pixels = image.shape[-2] * image.shape[-1]
        groups.setdefault(i if pixels > max_pixels else tuple(image.shape), []).append(i)
    return list(groups.values())


class FaceDetector(nn.Module):
    """Base class of face detectors: :meth:`detect` finds faces with 5 landmarks in a batch.

    Subclasses set :attr:`name` and :attr:`version` (bump it when results change) and implement :meth:`detect`;
    :meth:`config` lists the settings that change results, so that cached landmarks are keyed by :meth:`cache_id`.
    """

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "0"

    def detect(self, images: ImageInput | Sequence[ImageInput]) -> list[Detections]:
        """Faces in each image (best first), on the detector's device."""
        raise NotImplementedError

    def forward(self, images: ImageInput | Sequence[ImageInput]) -> list[Detections]:
        return self.detect(images)

    def config(self) -> dict[str, Any]:
        """Settings that change the detections (thresholds, sizes ...)."""
        return {}

    def cache_id(self) -> str:
        """``name-vVERSION-<hash of config>``: what detections in a cache are keyed by."""
        blob = json.dumps(self.config(), sort_keys=True).encode()
        return f"{self.name}-v{self.version}-{hashlib.sha256(blob).hexdigest()[:8]}"

    @property
    def device(self) -> torch.device:
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")


__all__ = [
    "LANDMARK_NAMES", "Detections", "FaceDetector", "ImageInput", "as_image_list", "image_to_tensor",
    "same_size_groups",
]
