"""Batches gathered from a decoded-image store: uint8 images that the model transforms on its device.

With a store (``FaceDataModule(cache="gpu" | "memory")``) the DataLoader samples indices and
:class:`StoreCollate` gathers their uint8 images from the store (on the GPU for ``cache: gpu``)
into an :class:`ImageBatch`. The model's ``on_after_batch_transfer`` turns it into network
input with its own preprocessing, dtype and memory format (augmented for training). No worker
processes, no per-epoch decoding::

    >>> import torch
    >>> from facetransfer.data.tensor_store import TensorStore
    >>> store = TensorStore(torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.arange(5))
    >>> batch = StoreCollate(store, augment=True)([3, 1])
    >>> tuple(batch.images.shape), batch.labels.tolist(), batch.augment
    ((2, 3, 8, 8), [3, 1], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch.utils.data import Dataset

from ..preprocess import ImageBatch
from .tensor_store import TensorStore, store_bytes

CacheMode = Literal["auto", "none", "memory", "gpu"]


class StoreIndex(Dataset):
    """``index -> index`` over ``length`` items (what a store-backed DataLoader samples)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index




class StoreCollate:
    """Collate sampled indices into an :class:`ImageBatch` gathered from ``store`` (where it lives)."""

    def __init__(self, store: TensorStore, augment: bool) -> None:
        self.store = store
        self.augment = augment

    def __call__(self, indices: Sequence[int]) -> ImageBatch:
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.store.device)
        return ImageBatch(self.store.images[index], self.store.labels[index], self.augment)


def resolve_cache_mode(mode: str, device: torch.device, images: int, side: int) -> str:
    """``auto`` -> ``gpu`` on a CUDA device when the store fits in 40 % of its free memory, else ``none``."""
    if mode not in ("auto", "none", "memory", "gpu"):
        from ..errors import ConfigError

        raise ConfigError(f"unknown cache {mode!r}; known: auto, gpu, memory, none")
    if mode == "gpu" and device.type != "cuda":
        return "memory"  # a CPU run keeps the store in RAM
    if mode != "auto":
        return mode
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if store_bytes(images, side) < 0.4 * free:
            return "gpu"
    return "none"
