"""Identity heads: the layer that turns an embedding into one logit per training identity.

``linear`` is the classic softmax classifier. The others compare the L2-normalised embedding with
L2-normalised class weights, so training shapes the embedding's *angles*, which is what matching
unseen people by cosine similarity uses: ``cosine`` (normalised softmax, logits ``s cos t``),
``cosface`` (Wang et al. 2018: ``s (cos t - m)`` for the true class) and ``arcface`` (Deng et al.
2019: ``s cos(t + m)`` for the true class). Margins apply only when labels are given (training);
without labels every head gives plain scaled cosines (or linear logits), as predictions need::

    >>> head = get_head("arcface", in_features=4, num_classes=3, scale=10.0, margin=0.2)
    >>> x, y = torch.randn(2, 4), torch.tensor([0, 2])
    >>> head(x).shape, bool((head(x, y) <= head(x) + 1e-6).all())
    (torch.Size([2, 3]), True)

Other packages add heads through the ``facetransfer.heads`` entry-point group: a :class:`Head`
subclass whose constructor takes ``in_features`` and ``num_classes`` (docs/plugins.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveFloat, restricted_number_type
from torch import nn

from ..config_errors import FractionUpToOne, UnitFraction, check_ranges
from ..registry import Registry


class Head(nn.Module):
    """Optional standardisation and dropout of the embedding, then :meth:`logits`.

    Args:
        in_features: size of the embedding.
        num_classes: number of training identities.
        norm: standardise the embedding first (``BatchNorm1d`` without affine parameters).
        norm_momentum: its running-statistics momentum (None: a plain average over all batches).
        dropout: dropout before the logits.

    Attributes:
        weight: ``(num_classes, in_features)``, one row per identity.
        normalized: whether the logits use the weights' directions only (an L2 penalty on them then
            changes nothing the head computes, so none is applied).
    """

    normalized = False

    def __init__(self, in_features: int, num_classes: int, norm: bool = False, norm_momentum: float | None = 0.1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_ranges({"dropout": dropout}, {"dropout": UnitFraction}, prefix="head ")
        self.norm = nn.BatchNorm1d(in_features, affine=False, momentum=norm_momentum) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.dropout(self.norm(embedding)), labels)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}"


HEADS: Registry[Head] = Registry("head", "facetransfer.heads", Head, arguments="head_args")
register_head = HEADS.register
list_heads = HEADS.names
get_head = HEADS.build


@register_head("linear")
class LinearHead(Head):
    """``x W^T + b``: the softmax classifier of the paper's strategies."""

    def __init__(self, in_features: int, num_classes: int, norm: bool = False, norm_momentum: float | None = 0.1,
                 dropout: float = 0.0) -> None:
        super().__init__(in_features, num_classes, norm, norm_momentum, dropout)
        bound = 1 / math.sqrt(in_features)
        self.bias = nn.Parameter(torch.empty(num_classes).uniform_(-bound, bound))

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints before heads were plug-ins hold an nn.Sequential (BatchNorm, Dropout, Linear) or a bare Linear
        for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()]:
            field = key.rsplit(".", 1)[1]
            state_dict[prefix + (field if field in ("weight", "bias") else f"norm.{field}")] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_head("cosine")
class CosineHead(Head):
    """``scale * cos(angle between the embedding and each identity's weights)`` (normalised softmax).

    Args:
        scale: the logits' scale ``s`` (the softmax's inverse temperature).
        margin: what :meth:`with_margin` takes from the true class while training (none here: 0).
    """

    normalized = True
    margin_type: Any = restricted_number_type("NoMargin", float, [("==", 0.0)])

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0, margin: float = 0.0,
                 norm: bool = False, norm_momentum: float | None = 0.1, dropout: float = 0.0) -> None:
        super().__init__(in_features, num_classes, norm, norm_momentum, dropout)
        check_ranges({"scale": scale, "margin": margin}, {"scale": PositiveFloat, "margin": self.margin_type},
                     prefix="head ")
        self.scale, self.margin = float(scale), float(margin)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        cos = F.linear(F.normalize(x.float(), dim=1), F.normalize(self.weight.float(), dim=1)).clamp(-1, 1)
        if labels is not None:
            target = cos.gather(1, labels[:, None])
            cos = cos.scatter(1, labels[:, None], self.with_margin(target))
        return self.scale * cos

    def with_margin(self, cos: torch.Tensor) -> torch.Tensor:
        """The true class's cosine during training."""
        return cos - self.margin

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}, margin={self.margin}"


@register_head("cosface")
class CosFaceHead(CosineHead):
    """Large-margin cosine loss (CosFace): the true class's cosine minus ``margin`` (in [0, 1]) while training."""

    margin_type = FractionUpToOne

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0, margin: float = 0.35,
                 norm: bool = False, norm_momentum: float | None = 0.1, dropout: float = 0.0) -> None:
        super().__init__(in_features, num_classes, scale, margin, norm, norm_momentum, dropout)


@register_head("arcface")
class ArcFaceHead(CosineHead):
    """Additive angular margin (ArcFace): the true class's angle plus ``margin`` (radians, in [0, pi/2)) while
    training.

    Beyond ``pi - margin`` the angle cannot grow further without the cosine rising again; there the
    logit continues as a straight line (``cos t - m sin m``), so the target logit keeps falling with the angle.
    """

    margin_type = restricted_number_type("AngularMargin", float, [(">=", 0.0), ("<", math.pi / 2)])

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0, margin: float = 0.5,
                 norm: bool = False, norm_momentum: float | None = 0.1, dropout: float = 0.0) -> None:
        super().__init__(in_features, num_classes, scale, margin, norm, norm_momentum, dropout)

    def with_margin(self, cos: torch.Tensor) -> torch.Tensor:
        m = self.margin
        sin = (1 - cos * cos).clamp_min(0).sqrt()
        shifted = cos * math.cos(m) - sin * math.sin(m)  # cos(t + m)
        return torch.where(cos > math.cos(math.pi - m), shifted, cos - m * math.sin(m))


def embedding_projection(in_features: int, embedding_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """The optional projection between a backbone's pooled features and its head: linear + BatchNorm
    (as insightface's embedding layer); its output is then the face embedding. ``dropout`` > 0 drops
    pooled features before the linear layer while training (ArcFace's "BN-Dropout-FC-BN" embedding).

    >>> embedding_projection(1280, 128)(torch.randn(4, 1280)).shape
    torch.Size([4, 128])
    >>> embedding_projection(1280, 128, dropout=0.4)[0]
    Dropout(p=0.4, inplace=False)
    """
    check_ranges({"dropout": dropout}, {"dropout": UnitFraction}, prefix="projection ")
    layers = [nn.Linear(in_features, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim)]
    return nn.Sequential(*([nn.Dropout(dropout)] if dropout > 0 else []), *layers)


__all__ = ["HEADS", "ArcFaceHead", "CosFaceHead", "CosineHead", "Head", "LinearHead", "embedding_projection",
           "get_head", "list_heads", "register_head"]
