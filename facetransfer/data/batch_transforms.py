"""Training augmentation and eval preprocessing on whole uint8 batches, on any device.

The decoded-image store (:mod:`facetransfer.data.tensor_store`) keeps each face as a
``S x S`` uint8 square (``S`` = the backbone's resize size). These transforms turn a
gathered batch into network input in one pass: a per-sample random resized crop and
horizontal flip through one batched ``grid_sample``, brightness/contrast/saturation
jitter in a per-sample random order, normalisation, the chosen dtype and memory format.
The recipe is the :class:`~facetransfer.preprocess.Augment` of the preprocessing, the same
one the PIL path (:meth:`Preprocess.train_transform`) applies::

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

_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


class BatchTransforms:
    """Batched versions of the eval and the augmented train transforms of a :class:`Preprocess`.

    Args:
        preprocess: crop size, resize size (= the store's side), mean, std and the augmentation.
        augment: apply ``preprocess.augment`` in :meth:`train` (else the eval crop).
        dtype: output dtype (e.g. ``torch.bfloat16`` under bf16-mixed training).
        channels_last: return channels-last tensors.
    """

    def __init__(
        self,
        preprocess: Preprocess,
        augment: bool = True,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        self.pp = preprocess
        self.recipe = preprocess.augment
        self.augment = augment
        self.dtype = dtype
        self.channels_last = channels_last

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
        """Random resized crop, flip, colour jitter (the :class:`Augment` recipe), normalise."""
        if not self.augment:
            return self.eval(images)
        b, device = images.shape[0], images.device
        c = self.pp.crop_size
        recipe = self.recipe

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(b, device=device, generator=generator) * (hi - lo) + lo

        area = uniform(*recipe.crop_scale(self.pp))
        aspect = torch.exp(uniform(math.log(recipe.ratio[0]), math.log(recipe.ratio[1])))
        half_w = torch.sqrt(area * aspect).clamp(max=1.0)  # half-extent in [-1, 1] coordinates
        half_h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - half_w)
        cy = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - half_h)
        flip = torch.where(torch.rand(b, device=device, generator=generator) < recipe.flip, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=device, dtype=torch.float32)
        theta[:, 0, 0] = half_w * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = half_h
        theta[:, 1, 2] = cy
        compute = self.dtype if images.is_cuda else torch.float32  # CPU grid_sample wants float32
        grid = F.affine_grid(theta.to(compute), [b, 3, c, c], align_corners=False)
        x = F.grid_sample(images.to(compute), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = self._jitter(x.div_(255.0), uniform, generator)
        return self._finish(x.to(self.dtype))

    def _jitter(self, x: torch.Tensor, uniform, generator: torch.Generator | None) -> torch.Tensor:
        """Brightness, contrast, saturation by factors in ``[1 - v, 1 + v]``, each sample in its own
        random order, clamped to [0, 1] after each step (torchvision's ``ColorJitter`` on floats)."""
        recipe = self.recipe
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
