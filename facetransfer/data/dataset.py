"""A map-style dataset over ``(key, label)`` items of a :class:`FaceSource`.

    >>> from facetransfer.data.sources import get_source
    >>> ds = FaceDataset(get_source("synthetic", num_identities=2, images_per_identity=3), [("person_0000/0000.png", 0)])
    >>> image, label = ds[0]
    >>> image.size, label
    ((112, 112), 0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from .sources import FaceSource


class FaceDataset(Dataset):
    """Loads ``source.open(key)`` (8-bit RGB) and applies ``transform``.

    With ``return_keys=True`` items are ``(image, label, key)`` (for prediction).
    """

    def __init__(self, source: FaceSource, items: Sequence[tuple[str, int]],
                 transform: Callable[[Any], Any] | None = None, return_keys: bool = False) -> None:
        self.source = source
        self.items = list(items)
        self.transform = transform
        self.return_keys = return_keys

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        key, label = self.items[index]
        image = self.source.open(key)
        if self.transform is not None:
            image = self.transform(image)
        return (image, label, key) if self.return_keys else (image, label)
