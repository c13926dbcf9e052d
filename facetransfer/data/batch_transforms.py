"""Training augmentation and eval preprocessing on whole uint8 batches, on any device.

The decoded-image store (:mod:`facetransfer.data.tensor_store`) keeps each face as a
``S x S`` uint8 square (``S`` = the backbone's resize size). These transforms turn a
gathered batch into network input in one pass: a per-sample random resized crop and
horizontal flip through one batched ``grid_sample``, brightness/contrast/saturation
jitter, normalisation, the chosen dtype and memory format — the same recipe as the PIL
path's :meth:`Preprocess.train_transform`::

    >>> import torch
    >>> from facetransfer.preprocess import Preprocess
    >>> t = BatchTransforms(Preprocess(crop_size=56, resize_size=64))
    >>> t.train(torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)).shape
    torch.Size([4, 3, 56, 56])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..preprocess import Preprocess

_GREY = (0.299, 0.587, 0.114)


class BatchTransforms:
    """Batched versions of the eval and (lightly augmented) train transforms.

    Args:
        preprocess: crop size, resize size (= the store's side), mean and std.
        augment: random resized crop + flip + colour jitter for training (else eval crop).
        dtype: output dtype (e.g. ``torch.bfloat16`` under bf16-mixed training).
        channels_last: return channels-last tensors.
    """

    def __init__(
        self,
        preprocess: Preprocess,
        augment: bool = True,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        ratio: tuple[float, float] = (0.9, 1.1),
        jitter: tuple[float, float, float] = (0.2, 0.2, 0.1),
    ) -> None:
        self.pp = preprocess
        self.augment = augment
        self.dtype = dtype
        self.channels_last = channels_last
        self.ratio = ratio
        self.jitter = jitter
        side = preprocess.crop_size / preprocess.resize_size
        self.scale = (0.7 * side**2, side**2)  # as Preprocess.train_transform

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.pp.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.pp.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """Center crop + normalise, as ``CenterCrop(crop_size)`` after the resize."""
        c = self.pp.crop_size
        h, w = images.shape[-2:]
        top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        x = images[..., top : top + c, left : left + c].to(self.dtype).div_(255.0)
        return self._finish(x)

    def train(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random resized crop (area ``scale``, aspect ``ratio``), flip, colour jitter, normalise."""
        if not self.augment:
            return self.eval(images)
        b, device = images.shape[0], images.device
        c = self.pp.crop_size

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(b, device=device, generator=generator) * (hi - lo) + lo

        area = uniform(*self.scale)
        log_ratio = uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = torch.exp(log_ratio)
        half_w = torch.sqrt(area * aspect).clamp(max=1.0)  # half-extent in [-1, 1] coordinates
        half_h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - half_w)
        cy = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - half_h)
        flip = torch.where(torch.rand(b, device=device, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=device, dtype=torch.float32)
        theta[:, 0, 0] = half_w * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = half_h
        theta[:, 1, 2] = cy
        compute = self.dtype if images.is_cuda else torch.float32  # CPU grid_sample wants float32
        grid = F.affine_grid(theta.to(compute), [b, 3, c, c], align_corners=False)
        x = F.grid_sample(images.to(compute), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = x.div_(255.0)

        bright, contrast, sat = self.jitter
        grey_w = torch.tensor(_GREY, device=device, dtype=x.dtype).view(1, 3, 1, 1)
        if bright > 0:
            x = x * uniform(1 - bright, 1 + bright).to(x.dtype).view(b, 1, 1, 1)
        if contrast > 0:
            mean = (x * grey_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = (x - mean) * uniform(1 - contrast, 1 + contrast).to(x.dtype).view(b, 1, 1, 1) + mean
        if sat > 0:
            grey = (x * grey_w).sum(1, keepdim=True)
            x = (x - grey) * uniform(1 - sat, 1 + sat).to(x.dtype).view(b, 1, 1, 1) + grey
        x = x.clamp_(0.0, 1.0).to(self.dtype)
        return self._finish(x)
