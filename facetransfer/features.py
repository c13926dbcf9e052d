"""Frozen-feature extraction, once per input, optionally cached on disk.

A linear probe's backbone never changes, so its features are computed once and
the head trains on them (no augmentation): one inference pass plus the head.
``features_logreg`` reuses the same extraction with a disk cache keyed by
backbone, weights, data source, split, images and transform::

    >>> feats, labels = extract_features(backbone, dataset, batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .models.backbone import Backbone
from .models.fusion import channels_last_is_faster, inference_forward


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
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        os.close(fd)
        torch.save({"features": features, "labels": labels}, tmp)
        os.replace(tmp, path)
        return features, labels
