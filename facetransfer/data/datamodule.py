"""One LightningDataModule for every face source, with seeded stratified splits.

    >>> dm = FaceDataModule("synthetic", dataset_args={"num_identities": 10}, train_samples=50, num_workers=0)
    >>> dm.num_classes, len(dm.manifest.train)
    (10, 50)

From YAML (LightningCLI)::

    data:
      dataset: lfw
      root: ../shared/data/lfw-devtrain
      min_images_per_identity: 10
      train_samples: all
"""

from __future__ import annotations

import logging
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from torch.utils.data import DataLoader

from ..config_errors import FractionUpToOne, check_ranges
from ..errors import ConfigError, DataError, listing
from ..features import FeatureProvider, InMemoryFeatures
from ..io.images import default_num_workers, image_files_under
from ..preprocess import ImageBatch, Preprocess
from .checks import find_bad_images
from .dataset import FaceDataset
from .sampler import ResumableDataLoader, ResumableSampler, SeededDataset, resume_position
from .sources import FaceRecord, FaceSource, get_source
from .split import SplitManifest, SplitSpec, TrainIdentities, TrainSamples, make_split, people_named_in
from .store_batches import CacheMode, StoreCollate, resolve_cache_mode
from .tensor_store import TensorStore

Split = Literal["train", "val", "test"]

MANIFEST_NAME = "split.json"


@rank_zero_only
def _say(message: str) -> None:
    """A progress line on stderr (process 0 only), for steps that take minutes."""
    print(message, file=sys.stderr, flush=True)


class FaceDataModule(L.LightningDataModule):
    """Face images of one source, split per identity into train pool / val / test.

    Args:
        dataset: ``lfw``, ``celeba``, ``folder``, ``synthetic`` (or a registered source).
        root: the dataset's folder (not needed for ``synthetic``).
        dataset_args: extra arguments of the source, e.g. ``{"people": "devtrain"}`` for LFW,
            ``{"partition": "train"}`` for CelebA, ``{"num_identities": 40}`` for synthetic.
        min_images_per_identity: drop identities with fewer images.
        max_identities: keep at most this many identities (those with most images).
        val_fraction / test_fraction: per-identity share of images held out (at least 1 each).
        train_samples: size of the training set drawn from the pool (nested across sizes), or ``all``.
        seed: seeds the split, the subsample order and the shuffling.
        balanced_eval: cut val/test to the same number of images per identity (imbalanced data).
        split_by: ``image`` (closed set: every identity in train, val and test, ``val_fraction`` /
            ``test_fraction`` being shares of each one's images) or ``identity`` (open set: whole people in
            train, val or test, the fractions being shares of people, dealt so each part gets the same mix of
            people with many and few images; val/test labels index ``manifest.eval_classes``).
        train_identities: with ``split_by: identity``, train on the first K training people only (a seeded
            order, nested: the K=50 people are among the K=100), or ``all``; val/test do not change.
        exclude_identities_in: a pairs file (LFW View 1 or View 2 format) whose people are left out of
            train, val and test, so that verifying on it checks only people the model never saw.
        train_min_images_per_identity: with ``split_by: identity``, people with fewer than
            ``min_images_per_identity`` images but at least this many train as extra classes (e.g. ``1``: LFW's
            people photographed once); val and test do not change. None: nobody below ``min_images_per_identity``.
        face_crop: central fraction of the image kept before resizing (None: dataset default; 1.0
            for aligned faces).
        align: ``none``, a registered face detector (``mtcnn``; detections cached on disk) or ``landmarks``
            (the dataset's own points, CelebA); faceless images follow ``on_bad_image``. See docs/alignment.md.
        align_template: ``dlib`` or ``arcface`` (None: the backbone's own, ``preprocess.face_template``),
            placed where the backbone's eval transform keeps it.
        augment: light training augmentation (random resized crop, flip, colour jitter).
        batch_size / eval_batch_size: training / evaluation batch sizes; ``all`` puts a whole split in
            one batch (for heads trained on frozen features with full-batch L-BFGS).
        num_workers: DataLoader workers (None: CPUs - 1, at most 8).
        on_bad_image: ``error`` stops before training listing unreadable files; ``skip`` leaves
            them out with one warning and records them in the manifest.
        check_images: decode-check every image once before splitting (file-backed sources).
        split_manifest: a ``split.json`` of an earlier run, or a checkpoint, whose split to reuse exactly.
        predict_root: folder of images for ``predict`` (default: the test split).
        preprocess: input geometry/normalisation of the model's backbone (``model.preprocess``; the CLI
            links it); None: ImageNet's 224 px.
        features: where frozen-backbone features come from when the model's backbone is frozen
            (the model attaches itself to it); None: an in-memory :class:`~facetransfer.features.InMemoryFeatures`.
        cache: ``gpu`` decodes every image once into a uint8 store on the GPU and augments whole
            batches there; ``memory`` keeps the store in RAM; ``none`` decodes JPEGs in DataLoader
            workers every epoch (for datasets too large to hold); ``auto``: ``gpu`` when training
            on a CUDA device and the store fits in 40 % of its free memory, else ``none``.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        dataset_args: dict[str, Any] | None = None,
        min_images_per_identity: int = 3,
        max_identities: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_samples: TrainSamples = "all",
        seed: int = 0,
        balanced_eval: bool = False,
        split_by: Literal["image", "identity"] = "image",
        train_identities: TrainIdentities = "all",
        exclude_identities_in: str | None = None,
        train_min_images_per_identity: int | None = None,
        face_crop: float | None = None,
        align: str = "none",
        align_template: str | None = None,
        augment: bool = True,
        batch_size: int | Literal["all"] = 32,
        eval_batch_size: int | Literal["all"] | None = None,
        num_workers: int | None = None,
        on_bad_image: Literal["error", "skip"] = "error",
        check_images: bool = True,
        split_manifest: str | None = None,
        predict_root: str | None = None,
        preprocess: Preprocess | None = None,
        features: FeatureProvider | None = None,
        cache: CacheMode = "auto",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["preprocess", "features"])
        if on_bad_image not in ("error", "skip"):
            raise ConfigError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size is not None and size != "all" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
                raise ConfigError(f"{name} must be a positive integer or 'all', got {size!r}")
        check_ranges({"face_crop": face_crop}, {"face_crop": FractionUpToOne})
        self.dataset = dataset
        self.root = root
        self.dataset_args = dict(dataset_args or {})
        self.split_spec = SplitSpec(
            min_images_per_identity=min_images_per_identity, max_identities=max_identities, val_fraction=val_fraction,
            test_fraction=test_fraction, train_samples=train_samples, seed=seed, balanced_eval=balanced_eval,
            split_by=split_by, train_identities=train_identities, exclude_identities_in=exclude_identities_in,
            train_min_images_per_identity=train_min_images_per_identity)
        self.align = align
        self.align_template = align_template
        source = get_source(dataset, root=root, **self.dataset_args)
        self.face_crop = face_crop if face_crop is not None else source.default_face_crop(align)
        if align != "none" and self.face_crop < 1:
            rank_zero_warn(f"face_crop={self.face_crop} crops the aligned face chips, which the template already "
                           "frames (set data.face_crop: 1.0 unless you want a tighter crop)")
        self.augment = augment
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.on_bad_image = on_bad_image
        self.check_images = check_images
        self.split_manifest = split_manifest
        self.predict_root = predict_root
        self.preprocess = preprocess if preprocess is not None else Preprocess()
        self.features: FeatureProvider = features if features is not None else InMemoryFeatures()
        self.features.read_splits_of(self._split_images)
        self._sources_for: dict[Preprocess, FaceSource] = {}
        self.source: FaceSource = self._aligned(source)
        self._manifest: SplitManifest | None = None
        self._checked_files: set[str] = set()
        self.cache = cache
        resolve_cache_mode(cache, torch.device("cpu"), 0, 1)  # validate the name now
        self._stores: dict[str, tuple[tuple, TensorStore]] = {}

    # --- alignment -------------------------------------------------------------------------
    def _aligned(self, source: FaceSource, preprocess: Preprocess | None = None) -> FaceSource:
        """``source`` with its faces detected and aligned as ``align`` says, onto the template of
        ``preprocess`` (default: this data's); unchanged for ``none``."""
        if self.align == "none":
            return source
        from ..detection import template_for_input
        from .aligned import aligned_source, alignment_choices

        if self.align not in alignment_choices():
            raise ConfigError(f"data.align: unknown value {self.align!r}; known: {', '.join(alignment_choices())}")
        template = template_for_input(preprocess or self.preprocess, self.align_template)
        return aligned_source(source, self.align, template)

    def source_for(self, preprocess: Preprocess) -> FaceSource:
        """The images as a backbone with ``preprocess`` must see them: when aligning, the chips of its own
        template and input size (one data module serves the features of several backbones).

        >>> data = FaceDataModule("synthetic")
        >>> data.source_for(Preprocess(112, 128)) is data.source  # no alignment: the same images
        True
        """
        if self.align == "none" or preprocess == self.preprocess:
            return self.source
        if preprocess not in self._sources_for:  # one aligner per backbone input, not one per call
            self._sources_for[preprocess] = self._aligned(getattr(self.source, "source", self.source), preprocess)
        return self._sources_for[preprocess]

    def _unusable(self, source: FaceSource, keys: list[str], detect: set[str] | None = None) -> list[tuple[str, str]]:
        """``(key, reason)`` of unreadable images and, when aligning, images without a face among ``detect``
        (default: all keys), all detected now, batched, so that epochs only warp. ``on_bad_image``: ``error``
        raises one :class:`DataError` listing them; ``skip`` warns once."""
        bad = find_bad_images(source, keys) if self.check_images else []
        if self.align != "none":
            known = {k for k, _ in bad}
            todo = [k for k in keys if k not in known and (detect is None or k in detect)]
            _say(f"facetransfer: finding the faces of {len(todo)} images with {self.align} "
                 "(detections are cached on disk: later runs only read them)")
            bad += source.find_faceless(todo, progress=sys.stderr.isatty())  # progress bars on a terminal
        what = "unreadable image(s)" if self.align == "none" else "unreadable image(s) or image(s) without a face"
        if bad and self.on_bad_image == "error":
            raise DataError(f"{len(bad)} {what} in {source.root} (set data.on_bad_image: skip to leave them out):\n"
                            + listing([f"{source.path(k)}: {why}" for k, why in bad], limit=50))
        if bad:
            rank_zero_warn(f"skipping {len(bad)} {what}: " + "; ".join(f"{k} ({why})" for k, why in bad))
        return bad

    # --- the split -------------------------------------------------------------------------
    @property
    def manifest(self) -> SplitManifest:
        """The split, built on first use (or loaded from ``split_manifest`` / a checkpoint)."""
        if self._manifest is None:
            if self.split_manifest:
                self.use_manifest(SplitManifest.load(self.split_manifest))
            else:
                self._manifest = self._build_manifest()
        return self._manifest

    def _build_manifest(self) -> SplitManifest:
        records = self.source.records()
        # detect only identities that can pass min_images_per_identity and are not excluded (the others are left out)
        counts = Counter(r.identity for r in records)
        spec = self.split_spec
        excluded = people_named_in(spec.exclude_identities_in) if spec.exclude_identities_in else set()
        candidates = {r.key for r in records
                      if counts[r.identity] >= spec.min_images_per_identity and r.identity not in excluded}
        bad = self._unusable(self.source, [r.key for r in records], detect=candidates)
        skipped = dict(bad)
        records = [r for r in records if r.key not in skipped]
        manifest = make_split(records, self.split_spec)
        manifest.source = self.source.describe()
        manifest.settings["face_crop"] = self.face_crop
        if self.align != "none":
            manifest.settings.update(align=self.align, align_template=self.align_template)
        manifest.skipped = [{"key": k, "reason": why} for k, why in bad]
        self._warn_about_identities(records, manifest)
        return manifest

    def _warn_about_identities(self, records: list[FaceRecord], manifest: SplitManifest) -> None:
        """Say how many identities the filter left out, and how many classes have no training image (in an
        image split they are in the test set all the same, where the model cannot name them)."""
        counts = Counter(r.identity for r in records)
        spec = self.split_spec
        least = spec.train_min_images_per_identity or spec.min_images_per_identity
        option = "train_min_images_per_identity" if spec.train_min_images_per_identity else "min_images_per_identity"
        dropped = sum(1 for n in counts.values() if n < least)
        used = manifest.num_classes + len(manifest.eval_classes or [])
        if dropped:
            rank_zero_warn(f"{option}={least} leaves out {dropped} of {len(counts)} identities "
                           f"(fewer images); {used} are used")
        untrained = manifest.num_classes - len({label for _, label in manifest.train})
        if untrained and manifest.open_set:
            rank_zero_warn(f"train_samples={self.split_spec.train_samples} leaves {untrained} of the "
                           f"{manifest.num_classes} training people without a training image (their classes are "
                           f"never trained); set data.train_samples to at least {manifest.num_classes} (or 'all'), "
                           "or lower data.train_identities")
        elif untrained:
            rank_zero_warn(f"train_samples={self.split_spec.train_samples} leaves {untrained} of "
                           f"{manifest.num_classes} identities without a training image, but they are in the val/test "
                           f"sets (where they cannot be recognised); set data.train_samples to at least "
                           f"{manifest.num_classes} (or 'all'), or lower data.max_identities")

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def eval_class_names(self) -> list[str] | None:
        """The val/test people of an identity split, in their label order (None for an image split, where val/test
        labels are the training classes)."""
        return None if self.manifest.eval_classes is None else list(self.manifest.eval_classes)

    @property
    def open_set(self) -> bool:
        """True when val/test hold people the model is not trained on (``split_by: identity``, or a reused
        identity split): their labels index ``manifest.eval_classes``, not the classifier's classes."""
        return self.manifest.open_set

    def state_dict(self) -> dict[str, Any]:
        """Stored in checkpoints: the split, so test/predict from a checkpoint needs nothing else."""
        return {"manifest": self.manifest.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "manifest" in state_dict:
            self.use_manifest(SplitManifest.from_dict(state_dict["manifest"], origin="checkpoint"))

    def use_manifest(self, manifest: SplitManifest) -> None:
        """Adopt a saved split, with the face crop it was made with.

        When the manifest comes from another kind of dataset than configured (e.g. ``facetransfer test --ckpt_path``
        with no data options), its recorded source (dataset, root, arguments) is used; a configured source of the
        same kind is kept. A configured ``root`` always wins over the recorded one, so a moved dataset is found with
        ``--data.root``.
        """
        recorded = manifest.source
        kind, args = recorded.get("dataset"), recorded.get("args", {})
        if kind is not None and (kind != self.dataset or (not self.dataset_args and args != self.source.init_args())):
            # another kind, or the same kind with no data.dataset_args given: the split's own source
            # (its arguments decide which images the keys name, e.g. a synthetic set's size)
            root = self._recorded_root(recorded)
            given = f" with {', '.join(f'{k}={v}' for k, v in args.items())}" if args else ""
            if rank_zero_only.rank == 0:  # shown with FACETRANSFER_LOGLEVEL=INFO: an error that follows stays one line
                logging.getLogger("facetransfer").info(f"using the split's data source {kind} at {root}{given}")
            self.source = self._aligned(get_source(kind, root=root, **args))
            self._sources_for.clear()
            self.dataset = kind
        elif kind == self.dataset and args and args != self.source.init_args():
            rank_zero_warn(f"data.dataset_args {self.source.init_args()} differ from those the split was made with "
                           f"{args}; using the configured ones")
        align, template = manifest.settings.get("align", "none"), manifest.settings.get("align_template")
        if (align, template) != (self.align, self.align_template):
            rank_zero_warn(f"using align={align} (template {template or 'of the backbone'}) recorded with the split "
                           f"(configured: {self.align})")
            self.align, self.align_template = align, template
            self.source = self._aligned(getattr(self.source, "source", self.source))
            self._sources_for.clear()
        crop = manifest.settings.get("face_crop")
        if crop is not None and crop != self.face_crop:
            rank_zero_warn(f"using face_crop={crop} recorded with the split (configured: {self.face_crop})")
            self.face_crop = crop
        if (changed := manifest.exclusion_warning()) is not None:
            rank_zero_warn(changed)
        self._manifest = manifest
        self._checked_files.clear()

    def _recorded_root(self, recorded: dict[str, Any]) -> str | None:
        """The root to read a recorded source from: the configured one, else the recorded absolute
        path, else the recorded path as it was given (relative to this working directory)."""
        if recorded.get("root") is None:
            return None  # generated data: no files
        if self.root:
            return self.root
        absolute, given = recorded.get("root"), recorded.get("root_as_given")
        if given and not Path(absolute).is_dir() and Path(given).is_dir():
            return given
        return absolute

    def check_files(self, split: Split) -> None:
        """Every image of ``split`` exists: a moved dataset is one clear error before any worker starts."""
        if self.source.root is None or split in self._checked_files:
            return
        missing = [k for k, _ in getattr(self.manifest, split) if not self.source.path(k).is_file()]
        if missing:
            raise DataError(f"{len(missing)} of {len(getattr(self.manifest, split))} {split} images are missing under "
                            f"{self.source.root} (e.g. {missing[0]}); if the dataset moved, point to it with "
                            "--data.root")
        self._checked_files.add(split)

    # --- Lightning hooks ---------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """For ``fit``: build the split now (bad data fails before any step) and save it with the logs.

        Other stages build it lazily, after a checkpoint (holding its own split) was restored.
        """
        if stage != "fit":
            return
        manifest, trainer = self.manifest, self.trainer
        if trainer is None:
            return
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            path = manifest.save(folder / MANIFEST_NAME)
            rank_zero_info(f"facetransfer: {split_summary(manifest)}; split written to {path}")

    def dataset_for(self, split: Split, train_transform: bool | None = None) -> FaceDataset:
        """The torch dataset of a split; ``train_transform`` defaults to True for ``train`` only."""
        if split == "train" if train_transform is None else train_transform:
            transform = self.preprocess.train_transform(self.face_crop, augment=self.augment)
        else:
            transform = self.preprocess.eval_transform(self.face_crop)
        return FaceDataset(self.source, getattr(self.manifest, split), transform)

    @property
    def device(self) -> torch.device:
        """The device the trainer runs on (the CPU outside a trainer)."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _batch(self, size: int | str, length: int) -> int:
        return max(1, length) if size == "all" else int(size)

    def _split_loader(self, split: Split, *, batch_size: int | str, shuffle: bool) -> DataLoader:
        self.check_files(split)
        if self.features.ready:  # a frozen backbone: its features, computed once
            dataset = self.features.features(split, *self._split_images(split))
            return self._loader(dataset, batch_size=self._batch(batch_size, len(dataset)), shuffle=shuffle, num_workers=0)
        if batch_size == "all":
            raise ConfigError(f"batch_size 'all' puts the whole {split} split in one batch; that needs frozen features "
                              "(model freeze: all with feature_cache: true); give a number of images instead")
        store = self._store(split)
        if store is not None:
            collate = StoreCollate(store, augment=self.augment and split == "train")  # the loader samples indices
            return self._loader(range(len(store)), batch_size=batch_size, shuffle=shuffle, num_workers=0,
                                collate_fn=collate, pin_memory=store.device.type == "cpu")
        return self._loader(self.dataset_for(split), batch_size=batch_size, shuffle=shuffle)

    def _split_images(self, split: Split) -> tuple[list[tuple[str, int]], Callable[[], Iterable[Any]]]:
        """A split's items and a function giving their eval batches (what the feature provider reads)."""
        return list(getattr(self.manifest, split)), lambda: self.eval_batches(split)

    def eval_batches(self, split: Split) -> Iterable[Any]:
        """Un-augmented batches of a split for one feature pass: store slices or eval-transformed images."""
        store, size = self._store(split), max(64, self._batch(self.eval_batch_size, len(getattr(self.manifest, split))))
        if store is None:
            return DataLoader(self.dataset_for(split, train_transform=False), batch_size=size,
                              num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        return (ImageBatch(store.images[i : i + size], store.labels[i : i + size]) for i in range(0, len(store), size))

    # --- decoded-image store (cache: gpu | memory) ----------------------------------------------
    def _store(self, split: Split) -> TensorStore | None:
        """The split's uint8 store (built on first use), or None on the PIL path."""
        m, side = self.manifest, self.preprocess.resize_size
        mode = resolve_cache_mode(self.cache, self.device, len(m.train) + len(m.val) + len(m.test), side)
        if mode == "none":
            return None
        where = self.device if mode == "gpu" else torch.device("cpu")
        key = (str(where), side, self.face_crop, id(self._manifest))
        cached = self._stores.get(split)
        if cached is not None and cached[0] == key:
            return cached[1]
        store = TensorStore.build(self.source, getattr(self.manifest, split), side=side, face_crop=self.face_crop,
                                  device=where)
        self._stores[split] = (key, store)
        return store

    def _loader(self, dataset, *, batch_size: int, shuffle: bool, num_workers: int | None = None, collate_fn=None,
                pin_memory: bool = True) -> DataLoader:
        """A DataLoader; for training, one whose order and augmentation depend only on (seed, epoch, index)
        (see sampler.py: resumes mid-epoch, shards over DDP ranks, same batches with any ``num_workers``).
        Every loader has its own generator: creating one never draws from the global RNG, which a resumed
        run restores exactly.
        """
        trainer = self.trainer
        num_workers = self.num_workers if num_workers is None else num_workers
        sampler, loader_class, drop_last = None, DataLoader, False
        if shuffle:
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            item_seeds = isinstance(dataset, FaceDataset)
            sampler = ResumableSampler(dataset, seed=self.split_spec.seed, num_replicas=world, rank=rank,
                                       item_seeds=item_seeds)
            # a last batch of one image cannot train BatchNorm (head_norm, the projection): it is left out, a
            # different image each epoch
            drop_last = len(sampler) > batch_size and len(sampler) % batch_size == 1
            batches = len(sampler) // batch_size if drop_last else math.ceil(len(sampler) / batch_size)
            epoch, done = resume_position(trainer, batches)
            sampler.set_epoch(epoch)
            sampler.skip = done * batch_size
            if item_seeds:
                dataset = SeededDataset(dataset)
            loader_class = ResumableDataLoader  # resumes by itself (see sampler.py)
        return loader_class(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                            drop_last=drop_last, persistent_workers=num_workers > 0,
                            pin_memory=pin_memory and self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.split_spec.seed), collate_fn=collate_fn)

    def train_dataloader(self) -> DataLoader:
        return self._split_loader("train", batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if not self.manifest.val:
            return []  # type: ignore[return-value]  # Lightning skips validation
        return self._split_loader("val", batch_size=self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._split_loader("test", batch_size=self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_root:
            root = Path(self.predict_root)
            if not root.is_dir():
                raise DataError(f"predict_root {root} does not exist or is not a folder")
            keys = sorted(str(p.relative_to(root)) for p in image_files_under(root))
            if not keys:
                raise DataError(f"no image files under predict_root {root}")
            source: FaceSource = self._aligned(get_source("folder", root=str(root)))
            if self.align != "none":
                dropped = dict(self._unusable(source, keys))
                keys = [k for k in keys if k not in dropped]
            items = [(k, -1) for k in keys]
        else:
            source, items = self.source, self.manifest.test
        dataset = FaceDataset(source, items, self.preprocess.eval_transform(self.face_crop), return_keys=True)
        return self._loader(dataset, batch_size=self._batch(self.eval_batch_size, len(dataset)), shuffle=False)


def split_summary(manifest: SplitManifest) -> str:
    """One line on the split's people and images.

    >>> split_summary(make_split([FaceRecord(f"p{i}", f"p{i}/{j}") for i in range(10) for j in range(3)],
    ...                          split_by="identity"))
    'split by identity: 7 train people (21 of 21 pool images), 1 val people (3 images), 2 test people (6 images)'
    """
    m = manifest
    train = f"{len(m.train):,} of {m.train_pool_size:,} pool images"
    if not m.open_set:
        return f"{m.num_classes:,} identities, train {train}, val {len(m.val):,}, test {len(m.test):,}"
    held = (f"{len(m.identities(part)):,} {part} people ({len(getattr(m, part)):,} images)" for part in ("val", "test"))
    return f"split by identity: {m.num_classes:,} train people ({train}), {', '.join(held)}"


__all__ = ["MANIFEST_NAME", "FaceDataModule"]
