"""Small box helpers for detection cascades (torch, any device).

Boxes are ``(N, 4)`` tensors ``x1, y1, x2, y2`` in pixels::

    >>> import torch
    >>> square_boxes(torch.tensor([[0.0, 0.0, 10.0, 20.0]]))
    tensor([[-5.,  0., 15., 20.]])
"""

from __future__ import annotations

import torch
from torchvision.ops import box_area


def apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move each side by its offset times the box's width (x) or height (y)."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """The square with the box's centre and its longer side."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], dim=1)


def nms_min_per_image(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy suppression by *intersection over the smaller box* within each group, best first.

    Removes a small box lying mostly inside a better-scoring one (a second detection of
    part of a face), which IoU suppression keeps.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b, g = boxes[order], groups[order]
    top_left = torch.maximum(b[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area = box_area(b)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-6)
    suppress = ((overlap > threshold) & (g[:, None] == g[None, :])).cpu()
    keep = torch.ones(len(b), dtype=torch.bool)
    for i in range(len(b)):
        if keep[i]:
            later = suppress[i].clone()
            later[: i + 1] = False
            keep &= ~later
    return order[keep.to(order.device)]


__all__ = ["apply_offsets", "nms_min_per_image", "square_boxes"]
