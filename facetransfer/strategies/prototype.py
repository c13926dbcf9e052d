"""``prototype``: nearest class mean by cosine similarity on L2-normalised frozen features.

Each identity's template is the normalised mean of its normalised training features (a
:class:`~facetransfer.verification.Gallery`'s rule): no training at all, the standard few-shot baseline.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..verification.templates import class_templates
from .base import CellContext, MethodSpec, register_strategy
from .frozen import FrozenFeatureStrategy


@register_strategy
class Prototype(FrozenFeatureStrategy):
    """Cosine nearest class mean on L2-normalised frozen features (no training; the gallery's rule)."""

    name = "prototype"
    plot_style = ((0, (1, 1)), "d")

    def solve(self, train: np.ndarray, labels: np.ndarray, test: np.ndarray, num_classes: int, method: MethodSpec,
              seed: int, ctx: CellContext) -> np.ndarray:
        templates = class_templates(torch.from_numpy(train), torch.from_numpy(labels), num_classes)
        scores = F.normalize(torch.from_numpy(test).float(), dim=1) @ templates.T
        present = torch.zeros(num_classes, dtype=torch.bool)
        present[torch.from_numpy(labels).long()] = True
        scores[:, ~present] = -2.0  # below any cosine similarity: identities without a training image
        return scores.numpy()
