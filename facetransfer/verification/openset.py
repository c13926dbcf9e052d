"""Verification of people never trained on, from a batch of labelled embeddings.

On an identity-disjoint validation or test split (``FaceDataModule(split_by="identity")``) a classifier's
logits mean nothing: its classes are the training people. What matters is whether the embedding tells
two photos of one unseen person from photos of two people. :func:`labelled_pairs_metrics` draws
balanced, seeded pairs among the labelled embeddings (the sampler of ``facetransfer pairs make``) and
scores them by cosine similarity::

    >>> emb = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
    >>> labels = torch.arange(40) // 4
    >>> labelled_pairs_metrics(emb, labels, pairs=50).num_pairs
    100
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pairs import make_pairs
from ..errors import DataError
from .metrics import VerificationMetrics, verification_metrics


def labelled_pairs_metrics(embeddings: torch.Tensor, labels: torch.Tensor, pairs: int = 3000, seed: int = 0,
                           far: float = 1e-3, folds: int = 10) -> VerificationMetrics:
    """Verification metrics of up to ``pairs`` same-person and as many different-person pairs.

    The pairs depend only on ``labels`` (in order) and ``seed``, so every epoch of a run is measured
    on the same pairs; accuracy is the ``folds``-fold cross-validated accuracy of LFW's protocol.
    """
    labels = labels.detach().cpu().long()
    positions: dict[str, list[int]] = {}
    for position, label in enumerate(labels.tolist()):
        positions.setdefault(str(label), []).append(position)
    possible = sum(len(p) * (len(p) - 1) // 2 for p in positions.values())
    if possible == 0 or len(positions) < 2:
        raise DataError(f"verification needs same-person pairs among {len(positions)} people and {len(labels)} "
                        "images: no person has 2 images here (raise min_images_per_identity or val_fraction)")
    count = min(pairs, possible)
    drawn = make_pairs({name: len(p) for name, p in positions.items()}, count, count, folds=1, seed=seed)
    first = torch.tensor([positions[p.name1][p.index1 - 1] for p in drawn])
    second = torch.tensor([positions[p.name2][p.index2 - 1] for p in drawn])
    unit = F.normalize(embeddings.detach().float().cpu(), dim=1)
    scores = (unit[first] * unit[second]).sum(1).numpy()
    same = np.array([p.same for p in drawn], dtype=np.int64)
    return verification_metrics(scores, same, far=far, n_folds=folds)


__all__ = ["labelled_pairs_metrics"]
