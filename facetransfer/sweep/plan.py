"""What a sweep is about to do and how its cells run: each seed's split, the grid's cells, which of them
are finished, one cell's row, the process's torch threads and Lightning's messages.

The grid has one cell per (training-set size, method, seed). Each seed has its own split; within a seed
the test set is the same for every ``N`` and the ``N`` training images are the first ``N`` of the pool
(on a grid over people, ``train_identities``, the ``K`` training people are the split's first ``K``, with all
their images).
Splits are seeded, so every process of a sweep builds the same plan, which it checks against
``sweep.json`` before it runs anything::

    >>> plan = prepare(load_sweep_config("configs/experiments/demo.yaml"), echo=print)  # doctest: +SKIP
    >>> len(plan.cells), len(plan.pending)  # doctest: +SKIP
    (15, 15)
    >>> run_cell(plan.cells[0], plan)["test_top1"]  # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from ..data import FaceDataModule
from ..data.pairs import PairsProtocol
from ..data.split import SplitManifest
from ..errors import ConfigError, FaceTransferError
from ..strategies.base import Cell, CellKey, MethodSpec
from ..training.devices import autocast_dtype, feature_device
from .config import SweepConfig
from .feature_store import FeatureStore, all_keys
from .parallel.lease import Lease, fingerprint_digest, read_leases, why_dead
from .results import METRIC_FIELDS, PAIRS_COLUMNS, RESULTS_NAME, ResultsTable, SweepState

Echo = Callable[[str], None]


def effective_sizes(requested: list[int | str], pool_size: int, axis: str = "train_samples",
                    unit: str = "images") -> tuple[list[int], list[str]]:
    """Requested sizes -> distinct sizes that fit the pool (ascending), and notices about capping (a
    size above the pool is capped to it, and runs once if it then equals another size).

    >>> sizes, notes = effective_sizes([50, 100, 5000, "all"], pool_size=2178)
    >>> sizes
    [50, 100, 2178]
    >>> notes[0]
    "train_samples 5000 is more than the training pool of 2178 images: capped to 2178 (= 'all')"
    """
    sizes = sorted({pool_size if n == "all" else min(int(n), pool_size) for n in requested})
    notes = [f"{axis} {n} is more than the training pool of {pool_size} {unit}: capped to {pool_size} (= 'all')"
             for n in requested if n != "all" and int(n) > pool_size]
    return sizes, notes


def split_digest(pool: SplitManifest) -> str:
    """Identifies a seed's split by its content (identities, pool order, val, test), not by paths."""
    parts = [pool.classes, pool.train, pool.val, pool.test]
    return fingerprint_digest([*parts, pool.eval_classes] if pool.open_set else parts)


def build_cells(config: SweepConfig, pools: dict[int, SplitManifest]) -> tuple[list[Cell], list[str]]:
    """All cells, ordered seed -> N -> method (every method's small-N results come first)."""
    cells: list[Cell] = []
    notes: list[str] = []
    people = config.train_identities is not None
    for seed in config.seeds:
        pool = pools[seed]
        most, unit = (pool.num_classes, "people") if people else (pool.train_pool_size, "images")
        sizes, seed_notes = effective_sizes(config.sizes, most, config.size_axis, unit)
        notes += [n for n in seed_notes if n not in notes]
        for size in sizes:
            images = len(pool.subset_identities(size).train) if people else size
            cells += [Cell(m, images, seed, pool.train_pool_size, size if people else None) for m in config.methods]
    return cells, notes


def build_splits(config: SweepConfig, echo: Echo) -> tuple[dict[int, SplitManifest], FaceDataModule, list[str]]:
    """Each seed's split with the whole training pool (bad data fails here, before any training),
    the data module of the first seed, and every image key of the splits (for the feature store)."""
    modules: dict[int, FaceDataModule] = {}
    for seed in config.seeds:
        try:
            modules[seed] = data = FaceDataModule(**config.data, seed=seed, train_samples="all")
        except (TypeError, ConfigError) as err:
            raise ConfigError(f"data: {err}") from None
        m = data.manifest
        balanced = " (balanced: the same number per identity)" if m.settings.get("balanced_eval") else ""
        unseen = f" ({len(m.eval_classes)} other people in val/test: open-set)" if m.open_set else ""
        echo(
            f"data (seed {seed}): {data.dataset} {data.root or ''} -> {m.num_classes} identities{unseen}, "
            f"train pool {m.train_pool_size}, val {len(m.val)}, test {len(m.test)} images{balanced}"
        )
    pools = {seed: data.manifest for seed, data in modules.items()}
    return pools, modules[config.seeds[0]], all_keys(list(pools.values()))


@dataclass
class SweepPlan:
    """A sweep's splits and cells, and the state of its results folder when it was made."""

    config: SweepConfig
    pools: dict[int, SplitManifest]
    data: FaceDataModule
    image_keys: list[str]
    cells: list[Cell]
    finished: set[CellKey] = field(default_factory=set)
    notices: list[str] = field(default_factory=list)  # of the cells run in this process, until shown

    @property
    def output_dir(self) -> Path:
        return self.config.output_dir

    @property
    def table(self) -> ResultsTable:
        return ResultsTable(self.output_dir / RESULTS_NAME)

    @property
    def pending(self) -> list[Cell]:
        return [c for c in self.cells if c.key not in self.finished]

    @cached_property
    def splits(self) -> dict[str, str]:
        """Each seed's split digest (``sweep.json`` records them)."""
        return {str(seed): split_digest(pool) for seed, pool in self.pools.items()}

    @cached_property
    def fingerprints(self) -> dict[str, Any]:
        """Each method's settings and the ``verify:`` section but its image folder (``sweep.json`` records them)."""
        verify = self.config.verify
        extra = {} if verify is None else {"verify": {"pairs": verify.pairs, "flip": verify.flip, "far": verify.far}}
        return {m.name: {**m.fingerprint(self.config.data), **extra} for m in self.config.methods}

    @cached_property
    def digests(self) -> dict[str, str]:
        """Each method's settings as a short hash (stored in its cells' leases)."""
        return {name: fingerprint_digest(fp) for name, fp in self.fingerprints.items()}

    def running(self) -> dict[CellKey, Lease]:
        """The live leases workers hold on cells of this grid."""
        keys = {c.key for c in self.cells}
        return {lease.cell: lease for lease in read_leases(self.output_dir)
                if lease.cell in keys and not why_dead(self.output_dir, lease)}

    def check_state(self, write: bool = True) -> None:
        """Refuse a changed split or changed method settings for cells with rows or running in another
        worker; record this sweep's (``write``: with its name, method order, config and grid) or only check."""
        config, recorded = self.config, self.finished | set(self.running())
        order = config.method_order or [m.name for m in config.methods]
        grid = [{"method": c.method.name, "train_samples": c.train_samples, "seed": c.seed, "label": c.label}
                | ({} if c.train_identities is None else {"train_identities": c.train_identities}) for c in self.cells]
        extra = {"name": config.name, "method_order": order, "config": config.to_dict(), "grid": grid}
        SweepState(self.output_dir).check_and_update(self.splits, self.fingerprints, recorded, extra, write=write)

    # what the cells run with (a strategies.base.CellContext): each cell's split and folder, the frozen-feature store
    def manifest(self, cell: Cell) -> SplitManifest:
        pool = self.pools[cell.seed]
        return pool.subset(cell.train_samples) if cell.train_identities is None else pool.subset_identities(cell.size)

    @property
    def logs_dir(self) -> Path:
        return self.output_dir / "logs"

    def cell_dir(self, cell: Cell) -> Path:
        return self.logs_dir / cell.method.slug / cell.folder

    @cached_property
    def feature_store(self) -> FeatureStore:
        """The frozen features of the config's cache folder, shared by every cell of this process."""
        data = self.data
        return FeatureStore(self.config.feature_cache_dir, data.source, self.image_keys, face_crop=data.face_crop,
                            batch_size=max(64, data.eval_batch_size), num_workers=data.num_workers,
                            source_for=data.source_for)

    @property
    def feature_device(self) -> torch.device:
        return feature_device(self.config.trainer)

    @property
    def feature_autocast(self) -> torch.dtype | None:
        """The dtype a Lightning cell would extract features with (so both kinds of cell share the cache)."""
        from ..training.trainer import default_precision

        trainer = self.config.trainer
        precision = trainer.get("precision") or default_precision(trainer.get("accelerator", "auto"))
        return autocast_dtype(precision, self.feature_device)

    @cached_property
    def pairs(self) -> PairsProtocol | None:
        """The ``verify:`` section's pairs and images (read when the sweep starts: a missing image fails then)."""
        verify = self.config.verify
        return None if verify is None else PairsProtocol.load(verify.pairs, verify.root or self.data.root)

    def verify_pairs(self, model: Any) -> dict[str, float | None]:
        """The ``pairs_verify_*`` columns of a cell's final ``model`` (None without a ``verify:`` section or model)."""
        verify, data = self.config.verify, self.data
        if verify is None or model is None:
            return dict.fromkeys(PAIRS_COLUMNS)
        from ..verification.evaluate import evaluate_pairs

        model.to(self.feature_device)  # a Lightning cell's model is back on the CPU after its test
        metrics = evaluate_pairs(model, self.pairs, face_crop=data.face_crop, flip=verify.flip, far=verify.far,
                                 num_workers=data.num_workers, align=data.align, align_template=data.align_template).metrics
        return dict(zip(PAIRS_COLUMNS, (metrics.accuracy, metrics.auc, metrics.tar)))


def prepare(config: SweepConfig, echo: Echo, quiet: bool = True) -> SweepPlan:
    """Build each seed's split (bad data fails here) and the grid; read which cells are finished."""
    with quiet_lightning(quiet):
        pools, data, image_keys = build_splits(config, echo)
    cells, notes = build_cells(config, pools)
    for note in notes:
        echo(f"notice: {note}")
    smallest = min(c.train_samples for c in cells)
    for method in config.methods:
        need = method.runner.min_train_samples
        if smallest < need:
            raise ConfigError(f"train_samples: {method.strategy} needs at least {need} training images, got {smallest}")
    plan = SweepPlan(config, pools, data, image_keys, cells)
    if plan.pairs is not None:
        echo(f"verify: {len(plan.pairs)} pairs of {len(plan.pairs.image_keys())} images in {config.verify.pairs}, "
             "their people left out of training")
    plan.finished = plan.table.finished_keys()
    return plan


def check_methods(config: SweepConfig, methods: list[MethodSpec]) -> None:
    """Build what each method's cells need once: bad options and missing weights fail now."""
    for method in methods:
        where = f"methods[{config.methods.index(method)}] ({method.name})"
        try:
            method.runner.check(method, config)
        except FaceTransferError as err:
            raise type(err)(f"{where}: {err}") from None
        except Exception as err:  # Lightning and torch raise several types for bad options
            raise ConfigError(f"{where}: {err}") from None


def run_cell(cell: Cell, plan: SweepPlan) -> dict[str, Any]:
    """Run one cell with its strategy (and verify the ``verify:`` pairs with its model); returns its results row."""
    start, method, manifest = time.perf_counter(), cell.method, plan.manifest(cell)
    result = method.runner.run(cell, plan)
    row = {
        "dataset": plan.config.data.get("dataset", "synthetic"), "method": method.name, "strategy": method.strategy,
        "backbone": method.backbone, "weights": method.weights_label, "train_samples": cell.train_samples,
        "train_identities": cell.train_identities, "seed": cell.seed, "identities": manifest.num_classes,
        "test_images": len(manifest.test), "pool_size": cell.pool_size, "test_top1": result.top1,
        "test_top5": result.top5, "test_macro_f1": result.macro_f1, "test_verify_acc": result.verify_acc,
        "test_verify_auc": result.verify_auc, "test_verify_tar": result.verify_tar, **plan.verify_pairs(result.model),
        "train_seconds": result.train_seconds, "device": result.device,
    }
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    row |= {"cell_seconds": time.perf_counter() - start, "finished_at": finished}
    log_hparams(plan.cell_dir(cell) / "hparams", row, method.model)
    return row


def log_hparams(folder: Path, row: dict[str, Any], model: dict[str, Any]) -> None:
    """A cell's settings and test metrics for TensorBoard's HParams dashboard, where every cell of every strategy,
    backbone and N is one row (the Lightning cells' own ``hp_metric`` runs sit next to it)."""
    from torch.utils.tensorboard import SummaryWriter

    keys = ("method", "strategy", "backbone", "weights", "train_samples", "train_identities", "seed")
    settings = {key: row[key] for key in keys if row.get(key) is not None}
    settings |= {f"model.{k}": v for k, v in model.items() if isinstance(v, (bool, int, float, str))}
    metrics = {f"cell/{key}": row[key] for key in (*METRIC_FIELDS, "train_seconds") if row.get(key) is not None}
    with SummaryWriter(str(folder)) as writer:
        writer.add_hparams({k: "none" if v is None else v for k, v in settings.items()}, metrics, run_name=".")


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` intra-op CPU threads (None: leave torch's setting), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_lightning(enabled: bool = True) -> Iterator[None]:
    """Hide Lightning's per-Trainer info lines (GPU available ..., seed set ...) during cells."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")] if enabled else []
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


__all__ = ["Echo", "SweepPlan", "build_cells", "build_splits", "check_methods", "effective_sizes", "log_hparams", "prepare",
           "quiet_lightning", "run_cell", "split_digest", "torch_threads"]
