"""Frozen-backbone features of every image of a dataset, extracted once and cached on disk.

``features_logreg`` and ``linear_probe`` cells need the same features: those of the
backbone with its pretrained weights, the eval transform and no augmentation. They are
computed once per (backbone, weights, input preprocessing, face crop, data source, image
set, precision) and stored by :class:`~facetransfer.features.FeatureCache`; every cell,
whatever its seed, split or ``N``, then picks its rows by image key::

    >>> store = FeatureStore("results/demo/features", source, keys, face_crop=1.0)  # doctest: +SKIP
    >>> feats, index = store.features(model)  # doctest: +SKIP
    >>> train = feats[[index[k] for k, _ in manifest.train]]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch

from ..data import FaceDataModule
from ..data.dataset import FaceDataset
from ..data.sources import FaceSource
from ..features import FeatureCache, FeatureDataset, extract_features, feature_cache_key
from ..module import FaceClassifier

FEATURES_VERSION = 1


def _file_identity(path: str | None) -> Any:
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return path
    return [os.path.abspath(path), stat.st_size, int(stat.st_mtime)]


def _random_init_identity(model: FaceClassifier) -> str | None:
    """A random-init backbone's features depend on its drawn weights: hash them (pretrained ones are named)."""
    hp = model.hparams
    if hp.get("weights") or hp.get("weights_path"):
        return None
    digest = hashlib.sha256()
    for name, tensor in model.backbone.stages.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureStore:
    """Features of ``keys`` (all images a sweep uses), cached on disk and in memory.

    Args:
        folder: the cache folder (``.pt`` files named by a hash of what determines them).
        source: the images.
        keys: every image key of the sweep (train pools, val and test sets of all seeds).
        face_crop: the data's face crop (part of the eval transform).
        batch_size / num_workers: of the extraction DataLoader.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        source: FaceSource,
        keys: Sequence[str],
        face_crop: float,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        self.cache = FeatureCache(folder)
        self.source = source
        self.keys = sorted(set(keys))
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.face_crop = face_crop
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._memory: dict[str, torch.Tensor] = {}
        self.memory_slots = 4
        self.computed = 0  # extractions run (cache misses)
        self.loaded = 0  # feature files read from disk (cache hits)

    def key_for(self, model: FaceClassifier, autocast_dtype: torch.dtype | None = None) -> str:
        hp = model.hparams
        parts = {
            "version": FEATURES_VERSION,
            "backbone": model.backbone_name,
            "weights": hp.get("weights"),
            "weights_path": _file_identity(hp.get("weights_path")),
            "random_init": _random_init_identity(model),
            "backbone_args": hp.get("backbone_args"),
            "preprocess": model.backbone.preprocess.to_dict(),
            "face_crop": self.face_crop,
            "source": self.source.describe(),
            "dtype": str(autocast_dtype),
        }
        return feature_cache_key(parts, self.keys)

    def features(
        self,
        model: FaceClassifier,
        device: torch.device | str | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, dict[str, int]]:
        """``(features of all keys, key -> row)``; extracted with ``model.backbone`` on a cache miss."""
        key = self.key_for(model, autocast_dtype)
        if key in self._memory:
            return self._memory[key], self.index

        def compute():
            self.computed += 1
            transform = model.backbone.preprocess.eval_transform(self.face_crop)
            dataset = FaceDataset(self.source, [(k, -1) for k in self.keys], transform)
            device_ = torch.device(device) if device is not None else model.device
            return extract_features(
                model.backbone,
                dataset,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                device=device_,
                autocast_dtype=autocast_dtype if device_.type == "cuda" else None,
                channels_last=model.hparams.get("channels_last"),  # None: the fastest format for the device
            )

        computed_before = self.computed
        feats, _ = self.cache.get_or_compute(key, compute)
        if len(feats) != len(self.keys):  # not the features of these images: never trust it
            self.cache.path(key).unlink(missing_ok=True)
            feats, _ = self.cache.get_or_compute(key, compute)
        if self.computed == computed_before:
            self.loaded += 1
        self._memory[key] = feats
        while len(self._memory) > self.memory_slots:  # forget the oldest backbone's features
            self._memory.pop(next(iter(self._memory)))
        return feats, self.index

    def select(self, feats: torch.Tensor, items: Sequence[tuple[str, int]]) -> FeatureDataset:
        """The rows of ``items`` (``(key, label)`` pairs) as a dataset of (feature, label)."""
        rows = torch.tensor([self.index[k] for k, _ in items], dtype=torch.long)
        labels = torch.tensor([label for _, label in items], dtype=torch.long)
        return FeatureDataset(feats[rows], labels)


class SweepDataModule(FaceDataModule):
    """A :class:`FaceDataModule` whose frozen-backbone features come from a :class:`FeatureStore`.

    Set ``feature_store`` after construction (it is no hyperparameter); without it, this
    is a plain FaceDataModule.
    """

    feature_store: FeatureStore | None = None

    def frozen_features(self, split: Literal["train", "val", "test"], model) -> FeatureDataset:
        store = self.feature_store
        if store is None or not isinstance(model, FaceClassifier):
            return super().frozen_features(split, model)
        precision = str(getattr(self.trainer, "precision", ""))
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
        if model.device.type != "cuda":  # autocast is only used on GPUs (as in FaceDataModule)
            dtype = None
        feats, _ = store.features(model, device=model.device, autocast_dtype=dtype)
        return store.select(feats, getattr(self.manifest, split))


def all_keys(manifests: Sequence[Any]) -> list[str]:
    """Every image key of the given split manifests (train pool, val, test)."""
    keys: set[str] = set()
    for m in manifests:
        for part in (m.train, m.val, m.test):
            keys.update(k for k, _ in part)
    return sorted(keys)


__all__ = ["FeatureStore", "SweepDataModule", "all_keys"]

