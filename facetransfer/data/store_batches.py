"""Batches gathered from a decoded-image store (``FaceDataModule(cache="gpu" | "memory")``): the DataLoader
samples indices, :class:`StoreCollate` gathers their uint8 images into an :class:`ImageBatch`, and the model's
``on_after_batch_transfer`` transforms it on its device (docs/performance.md)::

    >>> import torch
    >>> from facetransfer.data.tensor_store import TensorStore
    >>> store = TensorStore(torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.arange(5))
    >>> batch = StoreCollate(store, augment=True)([3, 1])
    >>> tuple(batch.images.shape), batch.labels.tolist(), batch.augment
    ((2, 3, 8, 8), [3, 1], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError
from ..preprocess import ImageBatch
from .tensor_store import TensorStore

CacheMode = Literal["auto", "none", "memory", "gpu"]


@dataclass
class StoreCollate:
    """Collate sampled indices into an :class:`ImageBatch` gathered from ``store`` (where it lives)."""

    store: TensorStore
    augment: bool

    def __call__(self, indices: Sequence[int]) -> ImageBatch:
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.store.device)
        return ImageBatch(self.store.images[index], self.store.labels[index], self.augment)


def resolve_cache_mode(mode: str, device: torch.device, images: int, side: int) -> str:
    """``auto`` -> ``gpu`` on a CUDA device when the store fits in 40 % of its free memory, else ``none``."""
    if mode not in ("auto", "none", "memory", "gpu"):
        raise ConfigError(f"unknown cache {mode!r}; known: auto, gpu, memory, none")
    if mode == "gpu" and device.type != "cuda":
        return "memory"  # a CPU run keeps the store in RAM
    if mode != "auto":
        return mode
    if device.type == "cuda" and images * 3 * side * side < 0.4 * torch.cuda.mem_get_info(device)[0]:
        return "gpu"
    return "none"
