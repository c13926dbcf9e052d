"""What a backbone expects of its input images, and the transforms built from it.

torchvision's weights enums carry their eval transform; :class:`Preprocess` is the same information as plain data, so
that a DataModule can build the matching train (lightly augmented) and eval pipelines for any backbone, on PIL images in
DataLoader workers (:meth:`Preprocess.train_transform`, :meth:`Preprocess.eval_transform`) or on whole uint8 batches on
the device (:class:`BatchTransforms`, for :class:`ImageBatch` es of a decoded-image store)::

    >>> pp = Preprocess(crop_size=112, resize_size=128)
    >>> pp.eval_transform()  # doctest: +ELLIPSIS
    Compose(...)
    >>> BatchTransforms(pp).train(torch.randint(0, 256, (4, 3, 128, 128), dtype=torch.uint8)).shape
    torch.Size([4, 3, 112, 112])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .errors import ConfigError

if TYPE_CHECKING:
    from torchvision.transforms import v2

# torchvision is imported when a transform is built, not with this module: ``import torchvision``
# also imports torch._dynamo (its detection ops), seconds that commands listing backbones need not pay

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Augment:
    """The training augmentation of faces, one recipe for the PIL path and the batched (GPU) path.

    A random resized crop covering ``area`` of the eval crop's area (aspect ratio in ``ratio``), a horizontal flip with
    probability ``flip``, then brightness / contrast / saturation jitter by factors drawn from ``[1 - x, 1 + x]``,
    applied in a random order (as torchvision's ``ColorJitter``). :meth:`Preprocess.train_transform` and
    :class:`~facetransfer.preprocess.BatchTransforms` both read it.

    >>> Augment().area
    (0.7, 1.0)
    """

    area: tuple[float, float] = (0.7, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)
    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1

    def crop_scale(self, preprocess: Preprocess) -> tuple[float, float]:
        """The crop's area as a fraction of the resized image (torchvision's ``scale``)."""
        side = preprocess.crop_size / preprocess.resize_size
        return (self.area[0] * side**2, self.area[1] * side**2)


@dataclass(frozen=True)
class Preprocess:
    """Input geometry and normalisation of a backbone, and its training augmentation.

    Args:
        crop_size: side of the square the network sees.
        resize_size: shorter side after resizing, before the center crop (eval).
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel standard deviation divided by.
        augment: the training augmentation recipe.
        face_template: the five-point face layout the backbone was trained on, used when faces are
            aligned (``dlib`` for dlib's face chips, ``arcface`` for the usual 112 px layout).
    """

    crop_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment: Augment = field(default_factory=Augment)
    face_template: str = "arcface"

    def to_dict(self) -> dict:
        return asdict(self)

    def eval_dict(self) -> dict:
        """What the eval transform depends on (no augmentation): identifies features and embeddings.
        (The face template matters only through an aligned source, which records it itself.)"""
        return {k: v for k, v in asdict(self).items() if k not in ("augment", "face_template")}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        """The inverse of :meth:`to_dict` (lists back to tuples; older dicts without ``augment``).

        >>> pp = Preprocess(112, 128)
        >>> Preprocess.from_dict(pp.to_dict()) == pp
        True
        """
        tupled = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "augment"}
        augment = {k: tuple(v) if isinstance(v, list) else v for k, v in (data.get("augment") or {}).items()}
        return cls(**tupled, augment=Augment(**augment))

    def resized(self, crop_size: int) -> Preprocess:
        """The same preprocessing for another input side, keeping the resize/crop ratio.

        >>> Preprocess(224, 256).resized(112).resize_size
        128
        """
        return replace(self, crop_size=crop_size, resize_size=round(crop_size * self.resize_size / self.crop_size))

    def eval_transform(self, face_crop: float = 1.0, normalize: bool = True) -> v2.Compose:
        """PIL image -> normalised float tensor, deterministic (val/test/features); ``normalize=False``
        stops at values in [0, 1] (what an exported model takes)."""
        from torchvision.transforms import v2

        steps = [*self._pil_resize(face_crop), v2.CenterCrop(self.crop_size), v2.ToDtype(torch.float32, scale=True)]
        return v2.Compose([*steps, v2.Normalize(self.mean, self.std)] if normalize else steps)

    def train_transform(self, face_crop: float = 1.0, augment: bool = True) -> v2.Compose:
        """The :class:`Augment` recipe on PIL images (in DataLoader workers); the eval transform if not ``augment``."""
        if not augment:
            return self.eval_transform(face_crop)
        from torchvision.transforms import v2

        aug = self.augment
        return v2.Compose([
            *self._pil_resize(face_crop),
            v2.RandomResizedCrop(self.crop_size, scale=aug.crop_scale(self), ratio=aug.ratio, antialias=True),
            v2.RandomHorizontalFlip(aug.flip),
            v2.ColorJitter(brightness=aug.brightness, contrast=aug.contrast, saturation=aug.saturation),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean, self.std),
        ])

    def _pil_resize(self, face_crop: float) -> list:
        """The first steps of both PIL transforms: to an image tensor, the face crop, the resize."""
        from torchvision.transforms import v2

        return [v2.ToImage(), FaceCrop(face_crop), v2.Resize(self.resize_size, antialias=True)]


class FaceCrop(torch.nn.Module):
    """Keep the central ``fraction`` of the shorter side as a square (aligned faces sit in the middle);
    a step of torchvision's ``v2.Compose`` (image tensors in, the same type out).

    >>> FaceCrop(0.6)(torch.zeros(3, 250, 250)).shape
    torch.Size([3, 150, 150])
    """

    def __init__(self, fraction: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"face_crop must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def forward(self, inpt: torch.Tensor) -> torch.Tensor:
        if self.fraction >= 1.0:
            return inpt
        from torchvision.transforms.v2 import functional as TF

        h, w = inpt.shape[-2:]
        side = max(1, round(min(h, w) * self.fraction))
        return TF.center_crop(inpt, [side, side])

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}"

@dataclass
class ImageBatch:
    """uint8 images ``(B, 3, S, S)`` at the preprocessing's resize size, their labels, and whether
    the model should apply the training augmentation to them."""

    images: torch.Tensor
    labels: torch.Tensor
    augment: bool = False

    def to(self, *args, **kwargs) -> ImageBatch:
        return ImageBatch(self.images.to(*args, **kwargs), self.labels.to(*args, **kwargs), self.augment)

    def __len__(self) -> int:
        return len(self.labels)


_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


class BatchTransforms:
    """Batched versions of the eval and the augmented train transforms of a :class:`Preprocess`.

    Args:
        preprocess: crop size, resize size (= the store's side), mean, std and the augmentation.
        dtype: output dtype (e.g. ``torch.bfloat16`` under bf16-mixed training).
        channels_last: return channels-last tensors.
    """

    def __init__(self, preprocess: Preprocess, dtype: torch.dtype = torch.float32, channels_last: bool = False) -> None:
        self.pp, self.dtype, self.channels_last = preprocess, dtype, channels_last

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        x = TF.normalize(x, list(self.pp.mean), list(self.pp.std))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """Center crop + normalise, as ``CenterCrop(crop_size)`` after the resize."""
        from torchvision.transforms.v2 import functional as TF

        return self._finish(TF.center_crop(images, [self.pp.crop_size] * 2).to(self.dtype).div_(255.0))

    def train(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random resized crop, flip, colour jitter (the :class:`Augment` recipe), normalise."""
        b, device = images.shape[0], images.device
        c = self.pp.crop_size
        recipe = self.pp.augment

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(b, device=device, generator=generator) * (hi - lo) + lo

        area = uniform(*recipe.crop_scale(self.pp))
        aspect = torch.exp(uniform(math.log(recipe.ratio[0]), math.log(recipe.ratio[1])))
        half_w = torch.sqrt(area * aspect).clamp(max=1.0)  # half-extent in [-1, 1] coordinates
        half_h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = uniform(-1.0, 1.0) * (1 - half_w)
        cy = uniform(-1.0, 1.0) * (1 - half_h)
        flip = torch.where(uniform(0.0, 1.0) < recipe.flip, -1.0, 1.0)
        zero = torch.zeros_like(cx)
        theta = torch.stack([half_w * flip, zero, cx, zero, half_h, cy], dim=1).view(b, 2, 3)
        compute = self.dtype if images.is_cuda else torch.float32  # CPU grid_sample wants float32
        grid = F.affine_grid(theta.to(compute), [b, 3, c, c], align_corners=False)
        x = F.grid_sample(images.to(compute), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = self._jitter(x.div_(255.0), uniform, generator)
        return self._finish(x.to(self.dtype))

    def _jitter(self, x: torch.Tensor, uniform, generator: torch.Generator | None) -> torch.Tensor:
        """Brightness, contrast, saturation by factors in ``[1 - v, 1 + v]``, each sample in its own
        random order, clamped to [0, 1] after each step (torchvision's ``ColorJitter`` on floats)."""
        recipe = self.pp.augment
        b = x.shape[0]
        strengths = (recipe.brightness, recipe.contrast, recipe.saturation)
        factors = [uniform(1 - v, 1 + v).to(x.dtype).view(b, 1, 1, 1) if v > 0 else None for v in strengths]
        grey_w = torch.tensor(_GREY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        order = torch.argsort(torch.rand(b, 3, device=x.device, generator=generator), dim=1)  # a permutation per sample
        for step in range(3):
            which = order[:, step].view(b, 1, 1, 1)
            for op, factor in enumerate(factors):
                if factor is None:
                    continue
                grey = (x * grey_w).sum(1, keepdim=True)
                anchor = 0.0 if op == 0 else grey.mean((2, 3), keepdim=True) if op == 1 else grey
                changed = ((x - anchor) * factor + anchor).clamp_(0.0, 1.0)
                x = torch.where(which == op, changed, x)
        return x
