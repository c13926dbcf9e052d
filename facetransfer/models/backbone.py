"""The uniform interface every backbone exposes (timm-style).

A :class:`Backbone` is an ordered list of named *stages* that turn an image batch into a ``(batch, num_features)``
feature vector, plus an optional embedding projection (*neck*) and a replaceable classification *head*. Freeze policies work on stage names, the LightningModule only
talks to ``forward_features`` / ``forward_head``::

    >>> import torch
    >>> from facetransfer.models import get_backbone
    >>> net = get_backbone("scratch_cnn")
    >>> net.reset_head(10)
    >>> net(torch.zeros(2, 3, 112, 112)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..preprocess import Preprocess
from .heads import Head, embedding_projection, get_head


class Backbone(nn.Module):
    """Named feature stages + pooling + a classification head.

    Args:
        stages: ordered ``name -> module``; applied in order they map images to a feature map (or vector).
        num_features: size of the vector that :meth:`forward_features` returns.
        preprocess: input size and normalisation the stages expect.
        pool: maps the last stage's output to ``(batch, num_features)``; global average pooling + flatten by default.
    """

    def __init__(
        self, stages: OrderedDict[str, nn.Module], num_features: int, preprocess: Preprocess,
        pool: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("a backbone needs at least one stage")
        self.stages = nn.Sequential(stages)
        self.pool = pool if pool is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.neck: nn.Module = nn.Identity()
        self.head: nn.Module = nn.Identity()
        self.num_features = num_features
        self.preprocess = preprocess
        self._frozen: list[str] = []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` -> features ``(B, num_features)``."""
        return self.pool(self.stages(x))

    def forward_head(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Features -> class logits through the projection (if any) and the head (identity until
        :meth:`reset_head`); ``labels`` (training) apply a margin head's margin."""
        embedding = self.neck(features)
        return self.head(embedding, labels) if isinstance(self.head, Head) else self.head(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_head(
        self, num_classes: int, head: str = "linear", embedding_dim: int | None = None, dropout: float = 0.0,
        norm: bool = False, norm_momentum: float | None = 0.1, **head_args: Any,
    ) -> None:
        """Replace the classification head by a fresh one from the head registry (``linear``, ``cosine``,
        ``cosface``, ``arcface``: :mod:`facetransfer.models.heads`), ``head_args`` its options (``scale``,
        ``margin``).

        ``embedding_dim`` puts a fresh linear projection + BatchNorm between the pooled features and the head:
        its output is then the face embedding (:meth:`embedding_net`). ``norm`` standardises the head's input
        first (``BatchNorm1d`` without affine), which makes a linear probe's learning rate independent of the
        backbone's feature scale; ``norm_momentum`` is its running-statistics momentum (None: a plain average
        over all batches, right for frozen features). ``dropout`` drops the pooled features while training, before
        the projection when there is one (ArcFace's "BN-Dropout-FC-BN" embedding), else before the head.
        """
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        # the dropout goes where the trained layers begin: before the projection if there is one, else the head
        self.neck = embedding_projection(self.num_features, embedding_dim, dropout) if embedding_dim else nn.Identity()
        options = {"norm": norm, "norm_momentum": norm_momentum, "dropout": 0.0 if embedding_dim else dropout,
                   **head_args}
        self.head = get_head(head, embedding_dim or self.num_features, num_classes, **options)

    @property
    def embedding_size(self) -> int:
        """Size of the face embedding: the projection's when there is one, else ``num_features``."""
        return self.neck[-1].num_features if isinstance(self.neck, nn.Sequential) else self.num_features

    def embedding_net(self) -> Backbone:
        """What embeds faces: this backbone, or with a projection a view of it (the same modules) whose pooling
        ends in the projection, so verification, galleries and export see the projected embedding."""
        if isinstance(self.neck, nn.Identity):
            return self
        view = Backbone(OrderedDict(self.stages.named_children()), self.embedding_size, self.preprocess,
                        pool=nn.Sequential(self.pool, self.neck))
        return view.train(self.training)

    @property
    def stage_names(self) -> list[str]:
        return list(self.stages._modules)

    def freeze_stages(self, names: Iterable[str]) -> None:
        """Freeze the named stages: no gradients, and BatchNorm kept in eval mode.

        Freezing is static: call it once before training. It replaces any earlier call.
        """
        names = list(names)
        unknown = [n for n in names if n not in self.stages._modules]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; this backbone has: {', '.join(self.stage_names)}")
        self._frozen = [n for n in self.stage_names if n in names]
        for name, stage in self.stages.named_children():
            stage.requires_grad_(name not in self._frozen)
        self.train(self.training)

    @property
    def fully_frozen(self) -> bool:
        """True when no stage learns (linear probe): features can run without autograd."""
        return len(self._frozen) == len(self.stages)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for name in self._frozen:
            self.stages._modules[name].eval()
        return self

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, frozen={self._frozen}"
