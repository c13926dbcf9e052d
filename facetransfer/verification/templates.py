"""Identity templates: the normalised mean of each identity's L2-normalised embeddings.

The rule of :class:`~facetransfer.verification.Gallery` (``match="mean"``) and of the
``prototype`` strategy (nearest class mean by cosine similarity)::

    >>> import torch
    >>> class_templates(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 0, 1]), 2)
    tensor([[0.7071, 0.7071],
            [0.7071, 0.7071]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_templates(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, D)`` templates; a class without embeddings gets a zero row (similarity 0)."""
    unit = F.normalize(embeddings.float(), dim=1)
    sums = torch.zeros(num_classes, unit.shape[1], dtype=unit.dtype).index_add_(0, labels.long(), unit)
    return F.normalize(sums, dim=1)


__all__ = ["class_templates"]
