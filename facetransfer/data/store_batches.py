"""Batches of *indices* into a decoded-image store, turned into images after the device transfer.

With a store (``FaceDataModule(cache="gpu" | "memory")``) the DataLoader yields
:class:`StoreBatch` es (a tensor of item indices and the split name); the
DataModule's ``on_after_batch_transfer`` gathers the uint8 images on the device and
applies the batched transforms. No worker processes, no per-epoch decoding::

    >>> batch = StoreCollate("train")([3, 1, 2])
    >>> batch.index.tolist(), batch.split
    ([3, 1, 2], 'train')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import Dataset

from .tensor_store import store_bytes

CacheMode = Literal["auto", "none", "memory", "gpu"]


class StoreIndex(Dataset):
    """``index -> index`` over ``length`` items (what a store-backed DataLoader samples)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


@dataclass
class StoreBatch:
    """A batch of store indices of one split; movable like a tensor."""

    index: torch.Tensor
    split: str

    def to(self, *args, **kwargs) -> StoreBatch:
        return StoreBatch(self.index.to(*args, **kwargs), self.split)

    def __len__(self) -> int:
        return len(self.index)


class StoreCollate:
    """Collate sampled indices into a :class:`StoreBatch` (picklable, unlike a lambda)."""

    def __init__(self, split: str) -> None:
        self.split = split

    def __call__(self, indices: Sequence[int]) -> StoreBatch:
        return StoreBatch(torch.as_tensor(list(indices), dtype=torch.long), self.split)


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
