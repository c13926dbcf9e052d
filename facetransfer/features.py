"""Frozen-feature extraction, once per input, in memory or cached on disk.

A linear probe's backbone never changes, so its features are computed once and the head
trains on them (no augmentation): one inference pass plus the head. The pieces:

- :func:`extract_features`: one inference pass of a backbone over a dataset or batches.
- :class:`BackboneFeatures`: a backbone with the settings of a run (autocast dtype, memory
  format, what identifies its features); :class:`~facetransfer.FaceClassifier` makes one.
- :class:`FeatureProvider`: what a :class:`~facetransfer.FaceDataModule` asks for the features
  of a split. The model attaches its :class:`BackboneFeatures` when its backbone is frozen; the
  data never sees the model. :class:`InMemoryFeatures` is the default; the sweep's on-disk
  store (:class:`~facetransfer.sweep.feature_store.FeatureStore`) is another.

    >>> feats, labels = extract_features(backbone, dataset, batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .errors import ConfigError
from .io.atomic import atomic_write
from .models.backbone import Backbone
from .models.fusion import channels_last_is_faster, inference_forward
from .preprocess import BatchTransforms, ImageBatch, Preprocess

Item = tuple[str, int]


class FeatureDataset(Dataset):
    """``(feature_vector, label)`` pairs held in memory."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.features[index], self.labels[index]


@torch.no_grad()
def extract_features(
    backbone: Backbone,
    dataset: Dataset | Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool | None = None,
    fuse: bool = True,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``backbone.forward_features`` over ``dataset`` in eval mode -> (float32 features, labels) on CPU.

    ``channels_last=None`` uses the channels-last memory format on CUDA and CPU devices, where
    convolutions are faster in it (MobileNetV2 inference on a 2-core CPU: about 1.4x).
    ``fuse`` folds BatchNorm into the convolutions for the pass (another 1.75x for MobileNetV2
    on that CPU; see :func:`~facetransfer.models.fusion.inference_forward`). The backbone is
    left as it was: training mode, memory format, weights.
    """
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    if channels_last is None:
        channels_last = channels_last_is_faster(device)
    if isinstance(dataset, Dataset):
        loader = DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, pin_memory=device.type == "cuda"
        )
    else:  # already an iterable of (images, labels) batches, e.g. from a decoded-image store
        loader = dataset
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="features", leave=False)
    feats, labels = [], []
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with inference_forward(backbone, channels_last=channels_last, fuse=fuse) as features, ctx:
        for batch in loader:
            feats.append(features(batch[0].to(device, non_blocking=True)).float().cpu())
            labels.append(torch.as_tensor(batch[1]))
    if not feats:
        return torch.zeros(0, backbone.num_features), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats), torch.cat(labels).long()


def feature_cache_key(parts: dict[str, Any], keys: Sequence[str]) -> str:
    """Stable hash of what determines a feature matrix (model, weights, source, transform, images)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for key in keys:
        digest.update(key.encode() + b"\0")
    return digest.hexdigest()[:24]


class FeatureCache:
    """A folder of ``<key>.pt`` feature files, written atomically.

    >>> cache = FeatureCache("/tmp/ft-cache")  # doctest: +SKIP
    >>> feats, labels = cache.get_or_compute(key, lambda: extract_features(...))  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def get_or_compute(self, key: str, compute) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.path(key)
        if path.is_file():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                return data["features"], data["labels"]
            except Exception:  # a damaged cache file is recomputed, never trusted
                path.unlink(missing_ok=True)
        features, labels = compute()
        with atomic_write(path, "wb") as fh:
            torch.save({"features": features, "labels": labels}, fh)
        return features, labels


@dataclass
class BackboneFeatures:
    """A frozen backbone ready to turn image batches into features, with a run's settings.

    Batches are ``(images, labels, ...)`` with float images preprocessed by
    ``preprocess`` (the PIL path), or :class:`~facetransfer.data.store_batches.ImageBatch` es of
    uint8 images, which get the batched eval transform on the backbone's device first.

    Args:
        backbone: the frozen backbone (its device is where features are computed).
        identity: what determines the features (backbone, weights, preprocessing ...), for caches.
        autocast: dtype of mixed-precision inference on CUDA (None: float32).
        channels_last: memory format of the pass (None: the faster one for the device).
    """

    backbone: Backbone
    identity: dict[str, Any] = field(default_factory=dict)
    autocast: torch.dtype | None = None
    channels_last: bool | None = None

    @property
    def preprocess(self) -> Preprocess:
        return self.backbone.preprocess

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def key(self) -> str:
        """A stable text form of :attr:`identity` and the dtype (a cache key part)."""
        return json.dumps({**self.identity, "dtype": str(self.autocast)}, sort_keys=True, default=str)

    def _inputs(self, batches: Iterable[Any]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        crop = self.preprocess.crop_size
        transforms = BatchTransforms(self.preprocess, augment=False, dtype=self.autocast or torch.float32)
        for batch in batches:
            if isinstance(batch, ImageBatch):
                yield transforms.eval(batch.images.to(self.device)), batch.labels
                continue
            images = batch[0]
            if images.shape[-1] != crop or images.shape[-2] != crop:
                raise ConfigError(
                    f"the data gives {tuple(images.shape[-2:])} px images but the backbone expects {crop} x {crop}: "
                    "build the DataModule with the model's preprocessing (FaceDataModule(preprocess=model.preprocess))"
                )
            yield images, batch[1]

    def __call__(self, batches: Iterable[Any], *, batch_size: int = 64, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, labels)`` of every image of ``batches`` (a Dataset or an iterable of batches)."""
        device = self.device
        if isinstance(batches, Dataset):
            batches = DataLoader(batches, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
        return extract_features(
            self.backbone,
            self._inputs(batches),
            device=device,
            autocast_dtype=self.autocast if device.type == "cuda" else None,
            channels_last=self.channels_last,
        )


def file_identity(path: str | os.PathLike | None) -> Any:
    """A local file as (absolute path, size, mtime) -- changes when the file is replaced."""
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return os.fspath(path)
    return [os.path.abspath(path), stat.st_size, int(stat.st_mtime)]


def random_init_identity(backbone: Backbone) -> str:
    """A hash of a backbone's feature weights (a random-init backbone's features depend on its draw)."""
    digest = hashlib.sha256()
    for name, tensor in backbone.stages.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


ImageBatches = Callable[[], Iterable[Any]]
#: a data module's splits as a provider reads them: split name -> (its ``(key, label)`` items, their eval batches)
SplitImages = Callable[[str], tuple[Sequence[Item], ImageBatches]]


class FeatureProvider:
    """Where a :class:`~facetransfer.FaceDataModule` gets the frozen features of a split.

    A model whose backbone is frozen :meth:`attach` es its :class:`BackboneFeatures` in its
    ``setup``; the DataModule then serves :meth:`features` instead of images. Subclasses
    implement :meth:`compute` (and may cache); ``seconds`` records how long each split took.

    >>> provider = InMemoryFeatures()
    >>> provider.ready
    False
    """

    def __init__(self) -> None:
        self.extractor: BackboneFeatures | None = None
        self.seconds: dict[str, float] = {}
        self.splits: SplitImages | None = None

    def read_splits_of(self, splits: SplitImages) -> None:
        """Take whole splits from ``splits`` (a FaceDataModule built with this provider gives its own)."""
        self.splits = splits

    def split_features(self, split: str, extractor: BackboneFeatures) -> FeatureDataset:
        """Features of every image of ``split`` of the data this provider serves, by ``extractor``:
        for a head fitted on frozen features before the backbone is fine-tuned."""
        if self.splits is None:
            raise ConfigError(
                "this feature provider serves no data: build the FaceDataModule with it and the model with the "
                "data's (FaceClassifier(features=data.features); the CLI and the sweep link them)"
            )
        items, images = self.splits(split)
        return self._timed(split, items, images, extractor)

    def attach(self, extractor: BackboneFeatures | None) -> None:
        """Serve features of ``extractor`` from now on (None: serve images again)."""
        self.extractor = extractor

    @property
    def ready(self) -> bool:
        return self.extractor is not None

    def features(self, split: str, items: Sequence[Item], images: ImageBatches) -> FeatureDataset:
        """Features of ``items`` (``(key, label)`` pairs of ``split``); ``images()`` gives their eval batches."""
        if self.extractor is None:
            raise RuntimeError("no backbone is attached to this FeatureProvider (a frozen model attaches one in setup)")
        return self._timed(split, items, images, self.extractor)

    def _timed(self, split: str, items: Sequence[Item], images: ImageBatches, extractor: BackboneFeatures) -> FeatureDataset:
        """:meth:`compute`, its seconds recorded in :attr:`seconds`."""
        start = time.perf_counter()
        dataset = self.compute(split, list(items), images, extractor)
        self.seconds[split] = time.perf_counter() - start
        return dataset

    def compute(self, split: str, items: list[Item], images: ImageBatches, extractor: BackboneFeatures) -> FeatureDataset:
        raise NotImplementedError


def _items_digest(items: Sequence[Item]) -> str:
    digest = hashlib.sha256()
    for key, label in items:
        digest.update(f"{key}\0{label}\0".encode())
    return digest.hexdigest()[:16]


class InMemoryFeatures(FeatureProvider):
    """Features of each split computed once per backbone and kept in memory (the default)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[tuple[str, str, str], FeatureDataset] = {}

    def compute(self, split: str, items: list[Item], images: ImageBatches, extractor: BackboneFeatures) -> FeatureDataset:
        key = (split, extractor.key() if extractor.identity else str(id(extractor.backbone)), _items_digest(items))
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != split}  # one backbone per split at a time
            feats, labels = extractor(images())
            self._cache[key] = FeatureDataset(feats, labels)
        return self._cache[key]
