"""Seeded, stratified splits (by image or by identity) with nested training subsets, saved as JSON.

``split_by="image"`` (closed set): identities are filtered (``min_images_per_identity``, ``max_identities``), then
each identity's images are shuffled with a seed derived from ``(seed, identity)`` and cut into test / val / train
pool, so every person is in every part. ``split_by="identity"`` (open set): whole people go to train / val / test,
``val_fraction`` / ``test_fraction`` being shares of people, dealt so that each part gets the same mix of people
with many and few images; the model never sees a val/test person in training.

Either way the training pool is ordered round-robin over its identities (in a seeded order), so the first ``N``
images are a stratified subset and the ``N=50`` set is inside the ``N=100`` set; val and test never depend on ``N``
(nor on ``train_identities``)::

    >>> from facetransfer.data.sources import FaceRecord
    >>> recs = [FaceRecord(f"p{i}", f"p{i}/{j}.jpg") for i in range(4) for j in range(10)]
    >>> m = make_split(recs, train_samples=6, seed=0)
    >>> len(m.train), len(m.val), len(m.test), m.train_pool_size
    (6, 4, 8, 28)
    >>> m = make_split(recs, split_by="identity", val_fraction=0.25, test_fraction=0.25)
    >>> m.open_set, m.num_classes, len(m.identities("val")), len(m.identities("test")), len(m.train)
    (True, 2, 1, 1, 20)
"""

from __future__ import annotations

import json
import math
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
from ..models.verified_cache import sha256_of
from .pairs import read_pairs
from .sources import FaceRecord

TrainSamples = int | Literal["all"]
TrainIdentities = int | Literal["all"]
SplitBy = Literal["image", "identity"]
Item = tuple[str, int]  # (key, label)
Part = Literal["train", "val", "test"]
MANIFEST_VERSION = 1


@dataclass
class SplitManifest:
    """Everything needed to rebuild the exact train/val/test sets of a run.

    ``classes`` are the classifier's classes: the identities of ``train`` (labels ``0..K-1``). In an image split
    val/test labels index ``classes`` too; in an identity split (``open_set``) they index ``eval_classes``, the
    people of val and test, none of whom is in ``classes``. A manifest without ``eval_classes`` is an image split.
    """

    classes: list[str]
    train: list[Item]
    val: list[Item]
    test: list[Item]
    train_pool_size: int
    settings: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    version: int = MANIFEST_VERSION
    eval_classes: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def open_set(self) -> bool:
        """True for an identity split: the val/test people are not among the trained ``classes``."""
        return self.eval_classes is not None

    def label_names(self, split: Part) -> list[str]:
        """The names the labels of ``split`` index: ``classes``, or ``eval_classes`` for val/test of an open set."""
        return self.eval_classes if self.eval_classes is not None and split != "train" else self.classes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (items as ``[key, label]`` lists); an image split has no ``eval_classes`` key."""
        data = asdict(self)
        for key in ("train", "val", "test"):
            data[key] = [[k, label] for k, label in data[key]]
        if data["eval_classes"] is None:
            del data["eval_classes"]
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
        for split in ("train", "val", "test"):
            n = len(manifest.label_names(split))
            bad = [k for k, label in getattr(manifest, split) if not 0 <= label < n]
            if bad:
                raise DataError(f"{origin}: {split} labels outside 0..{n - 1} for {bad[:3]}")
        return manifest

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename)."""
        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh, indent=1)
        return Path(path)

    def identities(self, split: Part) -> list[str]:
        """The people with images in ``split``, sorted.

        >>> SplitManifest(["a", "b"], [("a/1", 0)], [], [("b/1", 1)], 1).identities("test")
        ['b']
        """
        names = self.label_names(split)
        return sorted({names[label] for _, label in getattr(self, split)})

    def subset(self, train_samples: int) -> SplitManifest:
        """The same split with the first ``train_samples`` images of the training pool.

        Equal to the split made with ``train_samples=N`` and the same seed (the pool order
        does not depend on N), so a sweep makes every training-set size from one split.
        """
        if not 1 <= train_samples <= self.train_pool_size:
            raise ConfigError(f"train_samples {train_samples} outside 1..{self.train_pool_size}")
        n = "all" if train_samples == self.train_pool_size else train_samples
        return replace(self, train=list(self.train[:train_samples]), settings={**self.settings, "train_samples": n})

    def subset_identities(self, train_identities: TrainIdentities) -> SplitManifest:
        """The same identity split trained on its first ``train_identities`` people (in the split's seeded order),
        relabelled ``0..K-1``, with all their images; val and test unchanged.

        Equal to the split made with ``train_identities=K`` and the same seed, and the ``K=50`` people are among
        the ``K=100``, so a sweep makes every number of people from one split (then ``subset`` for images).
        Needs the whole training pool (a split made with ``train_samples: all``).
        """
        if not self.open_set:
            raise ConfigError("train_identities needs an identity split (data.split_by: identity); an image split "
                              "trains on every identity")
        if len(self.train) != self.train_pool_size:
            raise ConfigError(f"subset_identities needs the whole training pool ({self.train_pool_size} images), "
                              f"this split trains on {len(self.train)}; take the people first, then the images")
        order = list(dict.fromkeys(label for _, label in self.train))  # first round of the round-robin pool
        train_identities = len(order) if train_identities == "all" else train_identities
        check_count("train_identities", train_identities, len(order), "the {} training people of the split")
        chosen = {self.classes[label] for label in order[:train_identities]}
        classes = sorted(chosen)
        new_label = {name: i for i, name in enumerate(classes)}
        train = [(k, new_label[self.classes[label]]) for k, label in self.train if self.classes[label] in chosen]
        whole = self.settings.get("train_identities", "all") == "all" and train_identities == len(order)
        settings = {**self.settings, "train_identities": "all" if whole else train_identities}
        return replace(self, classes=classes, train=train, train_pool_size=len(train), settings=settings)

    def exclusion_warning(self) -> str | None:
        """A message when the pairs file this split left its people out of (``exclude_identities_in``) no longer
        has the recorded SHA-256; None when it is unchanged or not found. The split itself stays as recorded."""
        path, recorded = self.settings.get("exclude_identities_in"), self.settings.get("exclude_identities_sha256")
        if not path or not recorded or not Path(path).is_file() or sha256_of(path) == recorded:
            return None
        inside = sorted(people_named_in(path) & {*self.classes, *(self.eval_classes or [])})
        found = (f"{len(inside)} people it names are in the split (e.g. {', '.join(inside[:3])}): verifying on it "
                 "now checks people this split trains or selects on" if inside
                 else "the split still leaves out every person it names")
        return f"the pairs file {path} changed since the split was made (sha256 was {recorded[:12]}...); {found}"

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


def people_named_in(pairs_file: str | os.PathLike) -> set[str]:
    """Every person a pairs file (LFW View 1 or View 2 format) names."""
    pairs, _ = read_pairs(pairs_file)
    return {name for pair in pairs for name in (pair.name1, pair.name2)}


def _identity_seed(seed: int, identity: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(identity.encode())]))


def _count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 else max(1, round(n * fraction))


def check_count(name: str, value: int | str, limit: int | None = None, what: str = "") -> None:
    """``value`` is ``all`` or a positive integer, at most ``limit`` (``what``, a format of ``limit``, names it)."""
    if value == "all":
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a positive integer or 'all', got {value!r}")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1 (or 'all'), got {value}")
    if limit is not None and value > limit:
        raise ConfigError(f"{name}={value} is larger than {what.format(limit)}; use a smaller value or 'all'")


def check_train_samples(train_samples: TrainSamples, pool_size: int | None = None) -> None:
    check_count("train_samples", train_samples, pool_size,
                "the training pool ({} images after filtering and holding out val/test)")


@dataclass(frozen=True)
class SplitSpec:
    """How a split is made: by image or identity, identity filters, held-out fractions, training-set size, seed.

    ``train_min_images_per_identity`` (identity splits) lets people with fewer than ``min_images_per_identity``
    images, but at least this many, join the training part: a person photographed once cannot be verified, but
    is one more class to tell apart (LFW DevTrain: 2,854 more people, 58 % more training images). They are added
    after val and test are dealt, so val and test stay those of the split without them.

    ``exclude_identities_in`` names a pairs file whose people are left out of every part. The manifest records
    the path, how many of the dataset's people it left out and the file's SHA-256; a split reused later warns
    when the file has changed (:meth:`SplitManifest.exclusion_warning`) and keeps its recorded people.

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
    split_by: SplitBy = "image"
    train_identities: TrainIdentities = "all"
    exclude_identities_in: str | None = None
    train_min_images_per_identity: int | None = None

    def __post_init__(self) -> None:
        val, test = self.val_fraction, self.test_fraction
        if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
            raise ConfigError(f"val_fraction={val} and test_fraction={test} must be in [0, 1) with a sum below 1")
        if self.min_images_per_identity < 1:
            raise ConfigError(f"min_images_per_identity must be >= 1, got {self.min_images_per_identity}")
        if self.max_identities is not None and self.max_identities < 1:
            raise ConfigError(f"max_identities must be >= 1 or null, got {self.max_identities}")
        if self.split_by not in ("image", "identity"):
            raise ConfigError(f"split_by must be 'image' or 'identity', got {self.split_by!r}")
        check_train_samples(self.train_samples)
        check_count("train_identities", self.train_identities)
        if self.train_identities != "all" and self.split_by != "identity":
            raise ConfigError(f"train_identities={self.train_identities} needs split_by: identity (an image split "
                              "trains on every identity; use max_identities to keep fewer)")
        extra = self.train_min_images_per_identity
        if extra is not None:
            if self.split_by != "identity":
                raise ConfigError(f"train_min_images_per_identity={extra} needs split_by: identity (it adds people "
                                  "to the training part only)")
            if not 1 <= extra < self.min_images_per_identity:
                raise ConfigError(f"train_min_images_per_identity must be in 1..{self.min_images_per_identity - 1} "
                                  f"(below min_images_per_identity={self.min_images_per_identity}), got {extra}")


def make_split(records: Sequence[FaceRecord], spec: SplitSpec | None = None, **options: Any) -> SplitManifest:
    """Leave out excluded people, filter identities, split them, order the train pool round-robin, subsample it.

    ``spec`` (or the same fields as keyword arguments) says how. ``balanced_eval`` cuts val and
    test to the same number of images per identity (the smallest count): on an imbalanced dataset
    (LFW: George W. Bush is 16 % of the test images) accuracy is then the mean per-identity
    accuracy, and the best-val checkpoint cannot win by collapsing onto the largest identity;
    in an identity split every val/test person then weighs the same. The training pool is the same either way.
    """
    spec = spec if spec is not None else SplitSpec(**options)
    by_identity: dict[str, list[str]] = defaultdict(list)
    for rec in records:
        by_identity[rec.identity].append(rec.key)
    if not by_identity:
        raise DataError("the dataset has no images")
    exclusion: dict[str, Any] = {}
    if spec.exclude_identities_in:
        try:
            named = people_named_in(spec.exclude_identities_in)
        except DataError as err:
            raise DataError(f"exclude_identities_in: {err}") from None
        left_out = named & by_identity.keys()
        if len(left_out) == len(by_identity):
            raise DataError(f"exclude_identities_in={spec.exclude_identities_in} names all {len(by_identity)} people "
                            "of the dataset: nobody is left to split")
        by_identity = {i: keys for i, keys in by_identity.items() if i not in left_out}
        exclusion = {"excluded_identities": len(left_out),
                     "exclude_identities_sha256": sha256_of(spec.exclude_identities_in)}
    kept = {i: sorted(keys) for i, keys in by_identity.items() if len(keys) >= spec.min_images_per_identity}
    extra = spec.train_min_images_per_identity
    train_only = {i: sorted(keys) for i, keys in by_identity.items()
                  if extra and extra <= len(keys) < spec.min_images_per_identity}
    if not kept:
        largest = max(len(k) for k in by_identity.values())
        raise DataError(f"no identity has >= {spec.min_images_per_identity} images (min_images_per_identity); "
                        f"the largest has {largest}")
    if spec.max_identities is not None and len(kept) > spec.max_identities:
        # the identities with most images, ties by name: deterministic and independent of the seed
        chosen = sorted(kept, key=lambda i: (-len(kept[i]), i))[: spec.max_identities]
        kept = {i: kept[i] for i in chosen}
    if spec.split_by == "identity":
        manifest = _identity_split(kept, spec, train_only)
    else:
        manifest = _image_split(kept, spec)
    manifest.settings.update(exclusion)
    return manifest


def _image_split(kept: dict[str, list[str]], spec: SplitSpec) -> SplitManifest:
    """Every identity in every part: its images shuffled (seed, identity) and cut into test / val / train pool."""
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
    manifest = SplitManifest(classes, _round_robin(pools, spec.seed), val, test, 0, asdict(spec))
    return _take(manifest, spec)


def _identity_split(kept: dict[str, list[str]], spec: SplitSpec, train_only: dict[str, list[str]]) -> SplitManifest:
    """Whole people in each part, dealt by image count (see :func:`_deal`); the train pool holds all images of
    the training people (and of ``train_only``'s, who are not dealt), val / test all images of theirs."""
    people = sorted(kept, key=lambda i: (-len(kept[i]), i))  # most images first
    n_val, n_test = _count(len(people), spec.val_fraction), _count(len(people), spec.test_fraction)
    if len(people) - n_val - n_test < 1:
        raise DataError(f"{len(people)} people pass the filters but an identity split with val_fraction="
                        f"{spec.val_fraction} and test_fraction={spec.test_fraction} needs at least "
                        f"{n_val + n_test + 1} (1 train + {n_val} val + {n_test} test); add people (lower "
                        "min_images_per_identity, raise max_identities) or lower the fractions")
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, part in zip(people, _deal({"train": len(people) - n_val - n_test, "val": n_val, "test": n_test},
                                        np.random.default_rng([spec.seed, 1]))):
        parts[part].append(name)
    for part in ("val", "test"):
        if parts[part] and max(len(kept[name]) for name in parts[part]) < 2:
            raise DataError(f"no {part} person has 2 images, so an identity split cannot verify same-person pairs: "
                            "set min_images_per_identity: 2 (or more)")
    parts["train"] += sorted(train_only)
    kept = {**kept, **train_only}
    eval_classes = sorted(parts["val"] + parts["test"])
    eval_label = {name: idx for idx, name in enumerate(eval_classes)}
    val, test = ([(k, eval_label[name]) for name in sorted(parts[p]) for k in kept[name]] for p in ("val", "test"))
    if spec.balanced_eval:
        val, test = _balanced(val), _balanced(test)
    pools = {name: [kept[name][i] for i in _identity_seed(spec.seed, name).permutation(len(kept[name]))]
             for name in parts["train"]}
    manifest = SplitManifest(sorted(pools), _round_robin(pools, spec.seed), val, test, 0, asdict(spec),
                             eval_classes=eval_classes)
    if spec.train_identities != "all":
        manifest.train_pool_size = len(manifest.train)
        manifest = manifest.subset_identities(spec.train_identities)
    return _take(manifest, spec)


def _deal(counts: dict[str, int], rng: np.random.Generator) -> list[str]:
    """The part of each of ``sum(counts)`` people sorted by image count: a deck where every stretch holds the
    parts in proportion (each next card goes to the part furthest behind its share), shuffled within blocks of
    ``ceil(1 / smallest share)`` people of similar image count, so the seed picks who goes where.

    >>> _deal({"train": 7, "val": 1, "test": 2}, np.random.default_rng(0)).count("test")
    2
    """
    total = sum(counts.values())
    deck: list[str] = []
    given = dict.fromkeys(counts, 0)
    for i in range(total):
        part = max(counts, key=lambda p: (i + 1) * counts[p] / total - given[p])
        given[part] += 1
        deck.append(part)
    block = math.ceil(total / min(n for n in counts.values() if n))
    return [deck[start + j] for start in range(0, total, block)
            for j in rng.permutation(min(block, total - start))]


def _round_robin(pools: dict[str, list[str]], seed: int) -> list[Item]:
    """Rank 0 of every identity (in a seeded order), then rank 1, ...; labels index the sorted identities."""
    classes = sorted(pools)
    label = {name: idx for idx, name in enumerate(classes)}
    identity_order = [classes[i] for i in np.random.default_rng(seed).permutation(len(classes))]
    pool: list[Item] = []
    for rank in range(max(len(p) for p in pools.values())):
        pool += [(pools[name][rank], label[name]) for name in identity_order if rank < len(pools[name])]
    return pool


def _take(manifest: SplitManifest, spec: SplitSpec) -> SplitManifest:
    """The manifest of the whole pool cut to ``spec.train_samples`` (the pool size recorded)."""
    manifest.train_pool_size = len(manifest.train)
    check_train_samples(spec.train_samples, manifest.train_pool_size)
    if spec.train_samples != "all":
        manifest.train = manifest.train[: spec.train_samples]
    return manifest


def _balanced(items: list[Item]) -> list[Item]:
    """Keep the first ``k`` items of every label, ``k`` = the smallest label count (items grouped by label)."""
    groups = [list(group) for _, group in groupby(items, key=lambda item: item[1])]
    keep = min(map(len, groups), default=0)
    return [item for group in groups for item in group[:keep]]
