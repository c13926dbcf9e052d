"""Five-point similarity alignment, batched on any device.

:func:`similarity_transform` fits, per image, the rotation + uniform scale + translation that maps the
detected landmarks closest to the template in the least-squares sense (Umeyama, 1991, without reflection).
:func:`warp_faces` samples the chips with bilinear ``grid_sample``; a face much larger than its chip (a
6000 px photo) is first reduced with an antialiased resize, so the chip does not alias::

    >>> import torch
    >>> src = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]]])
    >>> dst = src * 3 + 1
    >>> torch.allclose(similarity_transform(src, dst), torch.tensor([[[3.0, 0.0, 1.0], [0.0, 3.0, 1.0]]]), atol=1e-5)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: a chip is sampled from a pre-reduced region when it shrinks the face by more than this
MAX_DOWNSCALE = 1.5


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity ``src -> dst`` per batch item: ``(B, N, 2)`` points -> ``(B, 2, 3)`` matrices.

    ``dst`` may be ``(N, 2)`` (one template for all). The matrix ``M`` maps a point ``p`` to ``M[:, :2] @ p + M[:, 2]``.
    """
    src = src.to(torch.float64)
    dst = dst.to(src.device, torch.float64).expand_as(src)
    mu_s, mu_d = src.mean(dim=1, keepdim=True), dst.mean(dim=1, keepdim=True)
    s, d = src - mu_s, dst - mu_d
    var_s = s.pow(2).sum(dim=(1, 2)) / src.shape[1]
    cov = d.transpose(1, 2) @ s / src.shape[1]  # (B, 2, 2)
    u, sigma, vh = torch.linalg.svd(cov)
    sign = torch.ones_like(sigma)
    sign[:, 1] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    sign[sign == 0] = 1.0
    rotation = u @ torch.diag_embed(sign) @ vh
    scale = (sigma * sign).sum(dim=1) / var_s.clamp(min=1e-12)
    linear = scale[:, None, None] * rotation
    shift = mu_d.squeeze(1) - (linear @ mu_s.transpose(1, 2)).squeeze(2)
    return torch.cat([linear, shift[:, :, None]], dim=2).to(torch.float32)


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(B, 2, 3)`` affine matrices."""
    linear_inv = torch.linalg.inv(matrix[:, :, :2].double())
    shift = -(linear_inv @ matrix[:, :, 2:].double())
    return torch.cat([linear_inv, shift], dim=2).to(matrix.dtype)


def transform_points(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``(B, 2, 3)`` matrices to ``(B, N, 2)`` points."""
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]


def transform_scale(matrix: torch.Tensor) -> torch.Tensor:
    """The uniform scale of each similarity matrix ``(B,)``."""
    return torch.linalg.det(matrix[:, :, :2].double()).abs().sqrt().to(matrix.dtype)


def _sampling_grid(chip_to_image: torch.Tensor, image_hw: tuple[int, int], size: int) -> torch.Tensor:
    """``grid_sample`` grid (``align_corners=False``) of the chip pixels' centres in the image."""
    device = chip_to_image.device
    centres = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    chip = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(chip_to_image.shape[0], -1, -1)
    image_points = transform_points(chip_to_image, chip)
    height, width = image_hw
    norm = torch.tensor([2.0 / width, 2.0 / height], device=device)
    return (image_points * norm - 1.0).reshape(-1, size, size, 2)


def warp_faces(images: torch.Tensor, image_to_chip: torch.Tensor, size: int) -> torch.Tensor:
    """Sample ``size`` x ``size`` chips out of same-size ``uint8`` images ``(B, C, H, W)``.

    ``image_to_chip`` are ``(B, 2, 3)`` matrices from image to chip pixel coordinates (as :func:`similarity_transform`
    fits them). Outside the image is black. Returns ``uint8`` ``(B, C, size, size)`` on the images' device.
    """
    if images.ndim != 4 or image_to_chip.shape != (images.shape[0], 2, 3):
        raise ValueError(f"expected images (B, C, H, W) and matrices (B, 2, 3), got {tuple(images.shape)}, "
                         f"{tuple(image_to_chip.shape)}")
    image_to_chip = image_to_chip.to(images.device, torch.float32)
    chips = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8, device=images.device)
    scales = transform_scale(image_to_chip)
    plain = (scales * MAX_DOWNSCALE >= 1.0).nonzero().squeeze(1)
    if plain.numel():
        grid = _sampling_grid(invert_affine(image_to_chip[plain]), tuple(images.shape[-2:]), size)
        sampled = F.grid_sample(images[plain].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        chips[plain] = sampled.round_().clamp_(0, 255).to(torch.uint8)
    for i in (scales * MAX_DOWNSCALE < 1.0).nonzero().squeeze(1).tolist():
        chips[i] = _warp_reduced(images[i], image_to_chip[i], size)
    return chips


def _warp_reduced(image: torch.Tensor, image_to_chip: torch.Tensor, size: int) -> torch.Tensor:
    """One chip that shrinks the face a lot: crop the face's region, resize it with antialiasing, then warp."""
    chip_to_image = invert_affine(image_to_chip[None])
    corners = torch.tensor([[0.0, 0.0], [size, 0.0], [0.0, size], [size, size]], device=image.device)
    region = transform_points(chip_to_image, corners[None])[0]
    height, width = image.shape[-2:]
    (x0, y0), (x1, y1) = region.min(dim=0).values.floor() - 1, region.max(dim=0).values.ceil() + 1
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))
    if x1 <= x0 or y1 <= y0:  # the chip lies entirely outside the image
        return torch.zeros(image.shape[0], size, size, dtype=torch.uint8, device=image.device)
    crop = image[:, y0:y1, x0:x1].float()[None]
    factor = float(transform_scale(image_to_chip[None])[0])  # reduce to the chip's resolution: then a ~1:1 warp
    out_hw = (max(1, round((y1 - y0) * factor)), max(1, round((x1 - x0) * factor)))
    reduced = F.interpolate(crop, size=out_hw, mode="bilinear", antialias=True, align_corners=False)
    # image coordinates -> reduced-crop coordinates: shift by the crop origin, scale per axis
    origin = torch.tensor([[0.0, 0.0, x0], [0.0, 0.0, y0]], device=image.device)
    axis_scale = torch.tensor([[out_hw[1] / (x1 - x0)], [out_hw[0] / (y1 - y0)]], device=image.device)
    grid = _sampling_grid(((chip_to_image[0] - origin) * axis_scale)[None], out_hw, size)
    sampled = F.grid_sample(reduced, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled[0].round_().clamp_(0, 255).to(torch.uint8)


__all__ = ["invert_affine", "similarity_transform", "transform_points", "transform_scale", "warp_faces"]
