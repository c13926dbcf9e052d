"""One augmentation recipe: the PIL path and the batched (store / GPU) path draw from the same distribution."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp

from facetransfer.preprocess import Augment, BatchTransforms, Preprocess

PP = Preprocess(crop_size=56, resize_size=64)
SAMPLES = 400


def structured_image(side: int = 64) -> np.ndarray:
    """Red grows left to right, green top to bottom, blue is a checkerboard: crops, flips and jitter all show."""
    ramp = np.linspace(0, 255, side)
    image = np.zeros((side, side, 3), dtype=np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = ((np.indices((side, side)).sum(0) // 8) % 2) * 200 + 30
    return image


def statistics(batch: torch.Tensor, pp: Preprocess) -> dict[str, np.ndarray]:
    """Per-sample statistics of un-normalised outputs in [0, 1]."""
    mean = torch.tensor(pp.mean).view(1, 3, 1, 1)
    std = torch.tensor(pp.std).view(1, 3, 1, 1)
    x = batch.float() * std + mean
    left, right = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return {
        "red_mean": x[:, 0].mean((1, 2)).numpy(),  # horizontal position, flip, brightness
        "green_mean": x[:, 1].mean((1, 2)).numpy(),  # vertical position, brightness
        "red_left_right": (right[:, 0].mean((1, 2)) - left[:, 0].mean((1, 2))).numpy(),  # flip sign, scale
        "contrast": x.std((1, 2, 3)).numpy(),
        "saturation": (x.max(1).values - x.min(1).values).mean((1, 2)).numpy(),
    }


def pil_path(pp: Preprocess) -> torch.Tensor:
    transform = pp.train_transform()
    image = Image.fromarray(structured_image(pp.resize_size))
    torch.manual_seed(0)
    return torch.stack([transform(image) for _ in range(SAMPLES)])


def batched_path(pp: Preprocess) -> torch.Tensor:
    images = torch.from_numpy(structured_image(pp.resize_size)).permute(2, 0, 1).expand(SAMPLES, -1, -1, -1)
    return BatchTransforms(pp).train(images.contiguous(), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def pil_statistics() -> dict[str, np.ndarray]:
    return statistics(pil_path(PP), PP)


def test_pil_and_batched_paths_draw_from_the_same_distribution(pil_statistics):
    batched = statistics(batched_path(PP), PP)
    for name, values in pil_statistics.items():
        result = ks_2samp(values, batched[name])
        assert result.pvalue > 1e-3, f"{name}: KS p={result.pvalue:.2g} (PIL vs batched augmentation differ)"


@pytest.mark.parametrize(
    "change", [{"brightness": 0.5}, {"flip": 0.0}, {"area": (0.3, 0.5)}, {"saturation": 0.0, "contrast": 0.0}]
)
def test_a_different_recipe_is_detected(pil_statistics, change):
    """The comparison above can fail: a batched path with another recipe is told apart."""
    other = replace(PP, augment=replace(PP.augment, **change))
    batched = statistics(batched_path(other), PP)
    smallest = min(ks_2samp(values, batched[name]).pvalue for name, values in pil_statistics.items())
    assert smallest < 1e-3


def test_both_paths_read_the_recipe():
    recipe = Augment(area=(0.5, 0.6), ratio=(1.0, 1.0), flip=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    pp = replace(PP, augment=recipe)
    crop = next(t for t in pp.train_transform().transforms if type(t).__name__ == "RandomResizedCrop")
    assert crop.scale == recipe.crop_scale(pp) and crop.ratio == (1.0, 1.0)
    out = BatchTransforms(pp).train(torch.full((8, 3, 64, 64), 128, dtype=torch.uint8))
    mean = torch.tensor(pp.mean).view(1, 3, 1, 1)
    std = torch.tensor(pp.std).view(1, 3, 1, 1)
    assert torch.allclose(out * std + mean, torch.full_like(out, 128 / 255), atol=1e-5)  # no jitter in the recipe
