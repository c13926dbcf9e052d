"""Frozen-feature extraction, once per input, in memory or cached on disk.

A linear probe's backbone never changes, so its features are computed once and the head trains on them.
:func:`batch_features` is the one inference pass of a frozen backbone, for datasets, image files and the
:class:`~facetransfer.verification.Embedder`. A :class:`FeatureProvider` serves a
:class:`~facetransfer.FaceDataModule` the features of its splits, in memory or on disk (the sweep's ``FeatureStore``)::

    >>> feats, labels = extract_features(backbone, dataset, batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .errors import ConfigError, DataError, listing
from .io.images import load_rgb
from .models.backbone import Backbone
from .models.fusion import channels_last_is_faster, inference_forward
from .preprocess import BatchTransforms, ImageBatch, Preprocess

Item = tuple[str, int]


class FeatureDataset(TensorDataset):
    """``(feature_vector, label)`` pairs held in memory."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(features, labels)
        self.features, self.labels = features, labels


@dataclass(frozen=True)
class TTA:
    """The views of each image whose features :func:`batch_features` averages (test-time augmentation).

    ``none``: the image; ``flip``: the image and its mirror; ``jitter:N``: N randomly jittered copies, as dlib's
    ``num_jitters``: each cut from a square of 96-99 % of the image's side, its centre moved by up to 2 % of the
    side, turned by up to 3 degrees and mirrored with probability 1/2 (black outside the image). The N jitters are
    drawn once from ``seed``, the same N for every image: an embedding does not depend on its batch, and repeats.

    >>> TTA.parse("jitter:10")
    TTA(kind='jitter', views=10, seed=0)
    >>> str(TTA.parse("flip")), TTA.parse(None).views
    ('flip', 1)
    """

    kind: str = "none"
    views: int = 1
    seed: int = 0
    side: ClassVar[tuple[float, float]] = (0.96, 0.99)  # the jittered square, as a fraction of the image's side
    shift: ClassVar[float] = 0.02  # at most this fraction of the side, along each axis
    degrees: ClassVar[float] = 3.0  # at most, either way

    @classmethod
    def parse(cls, spec: str | TTA | None, seed: int = 0) -> TTA:
        """``none`` (or None), ``flip`` or ``jitter:N``; anything else is one :class:`ConfigError` line."""
        if isinstance(spec, cls):
            return spec
        kind, colon, count = ("none" if spec is None else str(spec)).partition(":")
        if kind in ("none", "flip") and not colon:
            return cls(kind, 1 if kind == "none" else 2, seed)
        if kind == "jitter" and count.isdigit() and int(count) >= 1:
            return cls(kind, int(count), seed)
        raise ConfigError(f"test-time augmentation {spec!r} is not one of: none, flip, jitter:N (N >= 1 copies)")

    def __str__(self) -> str:
        return f"jitter:{self.views}" if self.kind == "jitter" else self.kind

    def jitters(self) -> torch.Tensor:
        """The ``(views, 2, 3)`` affine maps (``torch.nn.functional.affine_grid``'s ``theta``) of ``jitter:N``."""
        generator = torch.Generator().manual_seed(self.seed)

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(self.views, generator=generator, dtype=torch.float64) * (high - low) + low

        side, angle = uniform(*self.side), uniform(-self.degrees, self.degrees) * (math.pi / 180)
        shift_x, shift_y = uniform(-self.shift, self.shift) * 2, uniform(-self.shift, self.shift) * 2  # [-1, 1] units
        mirror = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
        cos, sin = side * torch.cos(angle), side * torch.sin(angle)
        return torch.stack([cos * mirror, -sin, shift_x, sin * mirror, cos, shift_y], dim=1).view(-1, 2, 3).float()

    def images(self, x: torch.Tensor, black: torch.Tensor) -> Iterator[torch.Tensor]:
        """The :attr:`views` of preprocessed images ``x`` ``(B, C, H, W)``, one at a time; ``black``: a black pixel,
        preprocessed ``(C,)``."""
        if self.kind != "jitter":
            yield from ([x, x.flip(-1)] if self.kind == "flip" else [x])
            return
        black = black.to(x.device, x.dtype).view(1, -1, 1, 1)
        for theta in self.jitters().to(x.device, x.dtype):
            grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
            yield F.grid_sample(x - black, grid, mode="bilinear", align_corners=False) + black


@torch.no_grad()
def batch_features(
    backbone: Backbone, batches: Iterable[torch.Tensor], *, device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None, channels_last: bool | None = None, fuse: bool = True,
    normalize: bool = False, tta: TTA | str | None = None,
) -> torch.Tensor:
    """Features of preprocessed image batches ``(B, 3, H, W)`` in one eval-mode pass -> float32 on the CPU.

    ``fuse`` folds BatchNorm into the convolutions for the pass (MobileNetV2 on a 2-core CPU: 1.75x),
    ``channels_last`` (None: on CUDA and CPU devices) runs in that memory format (1.4x more; see
    :func:`~facetransfer.models.fusion.inference_forward`). ``normalize`` scales each row to norm 1;
    ``tta`` (``flip``, ``jitter:N``: :class:`TTA`) averages the features of several views of each
    image (each normalised first with ``normalize``). The backbone is left as it was.
    """
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    dtype = next(backbone.parameters()).dtype if autocast_dtype is None else None  # autocast casts by itself
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    channels_last = channels_last_is_faster(device) if channels_last is None else channels_last
    unit = partial(F.normalize, dim=1) if normalize else (lambda feats: feats)
    tta = TTA.parse(tta)
    pp = backbone.preprocess
    black = -torch.tensor(pp.mean) / torch.tensor(pp.std)
    out = []
    with inference_forward(backbone, channels_last=channels_last, fuse=fuse) as forward, autocast:
        for images in batches:
            views = tta.images(images.to(device, dtype, non_blocking=True), black)
            feats = sum(unit(forward(view).float()) for view in views) / tta.views
            out.append((unit(feats) if tta.views > 1 else feats).cpu())
    return torch.cat(out) if out else torch.zeros(0, backbone.num_features)


def extract_features(
    backbone: Backbone, dataset: Dataset | Iterable[tuple[torch.Tensor, torch.Tensor]], *, batch_size: int = 64,
    num_workers: int = 0, progress: bool = False, **settings: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)`` of a dataset of ``(image, label, ...)`` or of ``(images, labels, ...)`` batches, in
    order; ``settings``: those of :func:`batch_features` (device, autocast_dtype, channels_last, fuse ...)."""
    from tqdm.auto import tqdm

    if isinstance(dataset, Dataset):
        pin = torch.device(settings.get("device") or next(backbone.parameters()).device).type == "cuda"
        dataset = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin)
    labels: list[torch.Tensor] = []

    def images() -> Iterator[torch.Tensor]:
        for batch in tqdm(dataset, desc="features", leave=False, disable=not progress):
            labels.append(torch.as_tensor(batch[1]))
            yield batch[0]

    feats = batch_features(backbone, images(), **settings)
    return feats, torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long)


class ImageFiles(Dataset):
    """``(image, "")`` per file: read by ``load`` (its pixels, or its aligned face), then ``transform``; an
    unreadable file, or one without a face, gives ``(None, reason)`` instead of raising."""

    def __init__(self, paths: Sequence[str | os.PathLike], transform: Callable, load: Callable = load_rgb) -> None:
        self.paths, self.transform, self.load = list(paths), transform, load

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        try:
            return self.transform(self.load(self.paths[index])), ""
        except DataError as err:
            return None, str(err)

    @staticmethod
    def collate(batch: list[tuple[torch.Tensor | None, str]]) -> tuple[tuple, tuple]:
        return tuple(zip(*batch))  # (images, reasons): the default collate cannot stack None


def file_features(
    backbone: Backbone, files: ImageFiles, *, batch_size: int = 64, num_workers: int = 0, progress: bool = False,
    **settings: Any,
) -> torch.Tensor:
    """Features of image files in order (read in a DataLoader, ``num_workers``); ``settings``: those of
    :func:`batch_features`. Every unreadable file is collected; one :class:`DataError` then lists them all."""
    from tqdm.auto import tqdm

    loader = DataLoader(files, batch_size=batch_size, num_workers=num_workers, collate_fn=ImageFiles.collate)
    errors: list[str] = []

    def readable() -> Iterator[torch.Tensor]:
        for images, reasons in tqdm(loader, desc="features", leave=False, disable=not progress):
            errors.extend(why for why in reasons if why)
            if not errors:  # after an unreadable file, the others are only read to list every bad one
                yield torch.stack(images)

    feats = batch_features(backbone, readable(), **settings)
    if errors:
        raise DataError(f"{len(errors)} image(s) could not be read:\n{listing(errors)}")
    return feats


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
        transforms = BatchTransforms(self.preprocess, dtype=self.autocast or torch.float32)
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
        cuda = self.device.type == "cuda"
        if isinstance(batches, Dataset):
            batches = DataLoader(batches, batch_size=batch_size, num_workers=num_workers, pin_memory=cuda)
        return extract_features(
            self.backbone, self._inputs(batches), channels_last=self.channels_last,
            autocast_dtype=self.autocast if cuda else None,
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


def weights_fingerprint(backbone: Backbone) -> str:
    """Short SHA-256 of the feature weights (head excluded): whether two models embed alike, and what a
    randomly initialised backbone's features depend on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        if name.startswith("head."):
            continue
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
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


class InMemoryFeatures(FeatureProvider):
    """Features of each split computed once per backbone and kept in memory (the default)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[tuple[str, str, tuple[Item, ...]], FeatureDataset] = {}

    def compute(self, split: str, items: list[Item], images: ImageBatches, extractor: BackboneFeatures) -> FeatureDataset:
        identity = extractor.key() if extractor.identity else str(id(extractor.backbone))
        key = (split, identity, tuple((k, label) for k, label in items))  # the items themselves: no digest to collide
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != split}  # one backbone per split at a time
            feats, labels = extractor(images())
            self._cache[key] = FeatureDataset(feats, labels)
        return self._cache[key]
