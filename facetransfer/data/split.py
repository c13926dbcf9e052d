"""Seeded, per-identity stratified splits with nested training subsets, saved as JSON.

Identities are filtered (``min_images_per_identity``, ``max_identities``), then each identity's images are shuffled
with a seed derived from ``(seed, identity)`` and cut into test / val / train pool. The training pool is ordered
round-robin over identities (in a seeded order), so the first ``N`` images are a stratified subset and the ``N=50``
set is inside the ``N=100`` set. The test set never depends on ``N``::

    >>> from facetransfer.data.sources import FaceRecord
    >>> recs = [FaceRecord(f"p{i}", f"p{i}/{j}.jpg") for i in range(4) for j in range(10)]
    >>> m = make_split(recs, train_samples=6, seed=0)
    >>> len(m.train), len(m.val), len(m.test), m.train_pool_size
    (6, 4, 8, 28)
"""

from __future__ import annotations

import json
import os
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DataError
from ..io.atomic import atomic_write
from .sources import FaceRecord

TrainSamples = int | Literal["all"]
Item = tuple[str, int]  # (key, label)
MANIFEST_VERSION = 1


@dataclass
class SplitManifest:
    """Everything needed to rebuild the exact train/val/test sets of a run."""

    classes: list[str]
    train: list[Item]
    val: list[Item]
    test: list[Item]
    train_pool_size: int
    settings: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (items as ``[key, label]`` lists)."""
        data = asdict(self)
        for key in ("train", "val", "test"):
            data[key] = [[k, label] for k, label in data[key]]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "manifest") -> SplitManifest:
        try:
            if data.get("version") != MANIFEST_VERSION:
                raise DataError(f"{origin}: unsupported split manifest version {data.get('version')!r}")
            data = dict(data)
            for key in ("train", "val", "test"):
                data[key] = [(str(k), int(label)) for k, label in data[key]]
            manifest = cls(**data)
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{origin} is not a facetransfer split manifest: {err}") from None
        n = manifest.num_classes
        bad = [k for part in (manifest.train, manifest.val, manifest.test) for k, label in part if not 0 <= label < n]
        if bad:
            raise DataError(f"{origin}: labels outside 0..{n - 1} for {bad[:3]}")
        return manifest

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename)."""
        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=1)
        return Path(path)

    def identities(self, split: Literal["train", "val", "test"]) -> list[str]:
        """The people with images in ``split``, sorted.

        >>> SplitManifest(["a", "b"], [("a/1", 0)], [], [("b/1", 1)], 1).identities("test")
        ['b']
        """
        return sorted({self.classes[label] for _, label in getattr(self, split)})

    def subset(self, train_samples: int) -> SplitManifest:
        """The same split with the first ``train_samples`` images of the training pool.

        Equal to the split made with ``train_samples=N`` and the same seed (the pool order
        does not depend on N), so a sweep makes every training-set size from one split.
        """
        if not 1 <= train_samples <= self.train_pool_size:
            raise ConfigError(f"train_samples {train_samples} outside 1..{self.train_pool_size}")
        n = "all" if train_samples == self.train_pool_size else train_samples
        return replace(self, train=list(self.train[:train_samples]), settings={**self.settings, "train_samples": n})

    @classmethod
    def load(cls, path: str | os.PathLike) -> SplitManifest:
        """A ``split.json``, or the split stored in a facetransfer checkpoint (``.ckpt``)."""
        path = Path(path)
        if path.suffix == ".ckpt":
            from ..io.checkpoint import read_checkpoint, stored_manifest

            manifest = stored_manifest(read_checkpoint(path))
            if manifest is None:
                raise DataError(f"checkpoint {path} holds no facetransfer split (it was not trained with "
                                "FaceDataModule)")
            return cls.from_dict(manifest, origin=f"the split in {path}")
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"split manifest {path} does not exist") from None
        except json.JSONDecodeError as err:
            raise DataError(f"split manifest {path} is not valid JSON: {err}") from None
        return cls.from_dict(data, origin=str(path))


def _identity_seed(seed: int, identity: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(identity.encode())]))


def _count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 else max(1, round(n * fraction))


def check_train_samples(train_samples: TrainSamples, pool_size: int | None = None) -> None:
    if train_samples == "all":
        return
    if isinstance(train_samples, bool) or not isinstance(train_samples, int):
        raise ConfigError(f"train_samples must be a positive integer or 'all', got {train_samples!r}")
    if train_samples < 1:
        raise ConfigError(f"train_samples must be >= 1 (or 'all'), got {train_samples}")
    if pool_size is not None and train_samples > pool_size:
        raise ConfigError(f"train_samples={train_samples} is larger than the training pool ({pool_size} images after "
                          "filtering and holding out val/test); use a smaller value or 'all'")


@dataclass(frozen=True)
class SplitSpec:
    """How a split is made: identity filters, held-out fractions, training-set size, seed.

    >>> SplitSpec(train_samples=0)
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: train_samples must be >= 1 (or 'all'), got 0
    """

    min_images_per_identity: int = 3
    max_identities: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    train_samples: TrainSamples = "all"
    seed: int = 0
    balanced_eval: bool = False

    def __post_init__(self) -> None:
        val, test = self.val_fraction, self.test_fraction
        if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
            raise ConfigError(f"val_fraction={val} and test_fraction={test} must be in [0, 1) with a sum below 1")
        if self.min_images_per_identity < 1:
            raise ConfigError(f"min_images_per_identity must be >= 1, got {self.min_images_per_identity}")
        if self.max_identities is not None and self.max_identities < 1:
            raise ConfigError(f"max_identities must be >= 1 or null, got {self.max_identities}")
        check_train_samples(self.train_samples)


def make_split(records: Sequence[FaceRecord], spec: SplitSpec | None = None, **options: Any) -> SplitManifest:
    """Filter identities, split each one, order the train pool round-robin, subsample it.

    ``spec`` (or the same fields as keyword arguments) says how. ``balanced_eval`` cuts val and
    test to the same number of images per identity (the smallest count): on an imbalanced dataset
    (LFW: George W. Bush is 16 % of the test images) accuracy is then the mean per-identity
    accuracy, and the best-val checkpoint cannot win by collapsing onto the largest identity.
    The training pool is the same either way.
    """
    spec = spec if spec is not None else SplitSpec(**options)
    by_identity: dict[str, list[str]] = defaultdict(list)
    for rec in records:
        by_identity[rec.identity].append(rec.key)
    if not by_identity:
        raise DataError("the dataset has no images")
    kept = {i: sorted(keys) for i, keys in by_identity.items() if len(keys) >= spec.min_images_per_identity}
    if not kept:
        largest = max(len(k) for k in by_identity.values())
        raise DataError(f"no identity has >= {spec.min_images_per_identity} images (min_images_per_identity); "
                        f"the largest has {largest}")
    if spec.max_identities is not None and len(kept) > spec.max_identities:
        # the identities with most images, ties by name: deterministic and independent of the seed
        chosen = sorted(kept, key=lambda i: (-len(kept[i]), i))[: spec.max_identities]
        kept = {i: kept[i] for i in chosen}
    classes = sorted(kept)
    label = {name: idx for idx, name in enumerate(classes)}

    pools: dict[str, list[str]] = {}
    val: list[Item] = []
    test: list[Item] = []
    for name in classes:
        keys = kept[name]
        order = [keys[i] for i in _identity_seed(spec.seed, name).permutation(len(keys))]
        n_test, n_val = _count(len(keys), spec.test_fraction), _count(len(keys), spec.val_fraction)
        if len(keys) - n_test - n_val < 1:
            need = n_test + n_val + 1
            raise DataError(f"identity {name!r} has {len(keys)} images but the split needs at least {need} "
                            f"(1 train + {n_val} val + {n_test} test); set min_images_per_identity: {need} to drop "
                            "such identities, or lower val_fraction/test_fraction")
        test += [(k, label[name]) for k in sorted(order[:n_test])]
        val += [(k, label[name]) for k in sorted(order[n_test : n_test + n_val])]
        pools[name] = order[n_test + n_val :]

    if spec.balanced_eval:
        val, test = _balanced(val), _balanced(test)
    identity_order = [classes[i] for i in np.random.default_rng(spec.seed).permutation(len(classes))]
    pool: list[Item] = []
    for rank in range(max(len(p) for p in pools.values())):
        pool += [(pools[name][rank], label[name]) for name in identity_order if rank < len(pools[name])]
    check_train_samples(spec.train_samples, len(pool))
    train = pool if spec.train_samples == "all" else pool[: spec.train_samples]
    return SplitManifest(classes, train, val, test, len(pool), asdict(spec))


def _balanced(items: list[Item]) -> list[Item]:
    """Keep the first ``k`` items of every label, ``k`` = the smallest label count (items grouped by label)."""
    groups = [list(group) for _, group in groupby(items, key=lambda item: item[1])]
    keep = min(map(len, groups), default=0)
    return [item for group in groups for item in group[:keep]]
