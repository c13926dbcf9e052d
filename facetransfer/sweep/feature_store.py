"""Frozen-backbone features of every image of a sweep, extracted once and cached on disk.

One ``.pt`` file per (backbone, weights, preprocessing, face crop, data source, image set, precision)
holds the features of every image of every seed's split; each cell, whatever its seed or ``N``, picks
its rows by image key. :class:`FeatureStore` is a :class:`~facetransfer.features.FeatureProvider`, so
Lightning cells get their features from it as a :class:`~facetransfer.FaceDataModule` does in a single
run. Workers sharing the folder compute each file once (a file lock per file, written atomically)::

    >>> store = FeatureStore("results/demo/features", source, keys, face_crop=1.0)  # doctest: +SKIP
    >>> train = store.select(extractor, manifest.train)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from ..data.dataset import FaceDataset
from ..data.sources import FaceSource
from ..features import BackboneFeatures, FeatureDataset, FeatureProvider, ImageBatches
from ..io.atomic import atomic_write, remove_stale_temporaries
from ..preprocess import Preprocess

FEATURES_VERSION = 1
Item = tuple[str, int]


class FeatureStore(FeatureProvider):
    """Features of ``keys`` (all images a sweep uses), cached on disk and in memory.

    Args:
        folder: the cache folder (``.pt`` files named by a hash of what determines them).
        source: the images.
        source_for: the images as a backbone's preprocessing must see them (aligned faces: the chips of
            its template and size), e.g. ``FaceDataModule.source_for``; None: ``source`` for every backbone.
        keys: every image key of the sweep (train pools, val and test sets of all seeds).
        face_crop: the data's face crop (part of the eval transform).
        batch_size / num_workers: of the extraction DataLoader.
    """

    def __init__(self, folder: str | os.PathLike, source: FaceSource, keys: Sequence[str], face_crop: float,
                 batch_size: int = 64, num_workers: int = 0,
                 source_for: Callable[[Preprocess], FaceSource] | None = None) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.source_for = source_for or (lambda preprocess: source)
        self.keys = sorted(set(keys))
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.face_crop = face_crop
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._memory: dict[str, torch.Tensor] = {}
        self.memory_slots = 4
        self.computed = 0  # extractions run (cache misses)
        self.loaded = 0  # feature files read from disk (cache hits)

    def key_for(self, extractor: BackboneFeatures) -> str:
        """A hash of what determines the features of :attr:`keys` (model, weights, source, transform, images)."""
        parts = {
            "version": FEATURES_VERSION,
            **extractor.identity,
            "face_crop": self.face_crop,
            "source": self.source_for(extractor.preprocess).describe(),
            "dtype": str(extractor.autocast),
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
        for key in self.keys:
            digest.update(key.encode() + b"\0")
        return digest.hexdigest()[:24]

    def all_features(self, extractor: BackboneFeatures) -> torch.Tensor:
        """Features of every key (rows in :attr:`keys` order), extracted on a cache miss."""
        key = self.key_for(extractor)
        if key not in self._memory:
            self._memory[key] = self._read_or_extract(self.folder / f"{key}.pt", extractor)
            while len(self._memory) > self.memory_slots:  # forget the oldest backbone's features
                self._memory.pop(next(iter(self._memory)))
        return self._memory[key]

    def _read_or_extract(self, path: Path, extractor: BackboneFeatures) -> torch.Tensor:
        """The features stored in ``path``, or extracted and written there atomically. One writer per file:
        other processes sharing the folder wait for its lock, then read."""
        with FileLock(path.with_suffix(".lock")):
            remove_stale_temporaries(path)  # a killed writer's leftovers (writers hold this lock)
            try:
                feats = torch.load(path, map_location="cpu", weights_only=True)["features"]
            except Exception:  # noqa: BLE001 - missing or damaged: extracted again, never trusted
                feats = None
            if feats is not None and len(feats) == len(self.keys):  # else the features of other images
                self.loaded += 1
                return feats
            self.computed += 1
            transform = extractor.preprocess.eval_transform(self.face_crop)
            dataset = FaceDataset(self.source_for(extractor.preprocess), [(k, -1) for k in self.keys], transform)
            feats, labels = extractor(dataset, batch_size=self.batch_size, num_workers=self.num_workers)
            with atomic_write(path, "wb") as fh:
                torch.save({"features": feats, "labels": labels}, fh)
            return feats

    def select(self, extractor: BackboneFeatures, items: Sequence[Item]) -> FeatureDataset:
        """The rows of ``items`` (``(key, label)`` pairs) as a dataset of (feature, label)."""
        feats = self.all_features(extractor)
        rows = torch.tensor([self.index[k] for k, _ in items], dtype=torch.long)
        labels = torch.tensor([label for _, label in items], dtype=torch.long)
        return FeatureDataset(feats[rows], labels)

    def compute(self, split: str, items: list[Item], images: ImageBatches, extractor: BackboneFeatures) -> FeatureDataset:
        return self.select(extractor, items)  # every image of the sweep at once, not this split's batches


def all_keys(manifests: Sequence[Any]) -> list[str]:
    """Every image key of the given split manifests (train pool, val, test)."""
    return sorted({key for m in manifests for part in (m.train, m.val, m.test) for key, _ in part})


__all__ = ["FeatureStore", "all_keys"]
