"""Which face of a photo to align when it shows several: the pick policies.

    >>> PICK_POLICIES
    ('largest_central', 'largest', 'central')
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .detector import Detections

PICK_POLICIES = ("largest_central", "largest", "central")


def pick_face(faces: Detections, image_size: tuple[int, int], policy: str = "largest_central") -> int:
    """Index of the face the policy picks among several.

    - ``largest``: the largest box;
    - ``central``: the box whose centre is nearest the image centre;
    - ``largest_central``: the largest box once its distance from the centre is counted
      against it: ``area - 2 * distance**2`` (pixels; the rule insightface uses). A photo's
      subject is usually large *and* central; a bigger face at the edge loses to it.

    >>> import torch
    >>> boxes = torch.tensor([[0., 0, 100, 100], [120, 120, 200, 200]])
    >>> faces = Detections(boxes, torch.zeros(2, 5, 2), torch.ones(2))
    >>> [pick_face(faces, (320, 320), p) for p in ("largest", "central", "largest_central")]
    [0, 1, 1]
    """
    if len(faces) == 0:
        raise ValueError("no faces to pick from")
    if policy not in PICK_POLICIES:
        raise ConfigError(f"unknown face pick policy {policy!r}; known: {', '.join(PICK_POLICIES)}")
    boxes = faces.boxes.float()
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    centre = torch.tensor(image_size, dtype=torch.float32, device=boxes.device) / 2
    distance2 = ((boxes[:, :2] + boxes[:, 2:]) / 2 - centre).pow(2).sum(dim=1)
    if policy == "largest":
        return int(area.argmax())
    if policy == "central":
        return int(distance2.argmin())
    return int((area - 2 * distance2).argmax())


__all__ = ["PICK_POLICIES", "pick_face"]
