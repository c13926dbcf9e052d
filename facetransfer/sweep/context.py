"""Running a sweep's cells: each seed's split, the methods built once, one cell's row, the process's
torch threads and Lightning's messages.

    >>> plan = prepare(load_sweep_config("configs/experiments/demo.yaml"), echo=print)  # doctest: +SKIP
    >>> row = run_cell(plan.cells[0], plan)  # doctest: +SKIP
    >>> row["test_top1"]  # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import torch

from ..data import FaceDataModule
from ..data.split import SplitManifest
from ..errors import ConfigError, FaceTransferError
from ..strategies.base import Cell, CellContext, MethodSpec
from .config import SweepConfig
from .feature_store import all_keys

Echo = Callable[[str], None]


def run_cell(cell: Cell, ctx: CellContext) -> dict[str, Any]:
    """Run one cell with its strategy; returns its results row."""
    start = time.perf_counter()
    manifest = ctx.manifest(cell)
    result = cell.method.runner.run(cell, ctx)
    return {
        "dataset": ctx.config.data.get("dataset", "synthetic"),
        "method": cell.method.name,
        "strategy": cell.method.strategy,
        "backbone": cell.method.backbone,
        "weights": cell.method.weights_label,
        "train_samples": cell.train_samples,
        "seed": cell.seed,
        "identities": manifest.num_classes,
        "test_images": len(manifest.test),
        "pool_size": cell.pool_size,
        "test_top1": float(result.top1),
        "test_top5": float(result.top5),
        "test_macro_f1": float(result.macro_f1),
        "train_seconds": result.train_seconds,
        "cell_seconds": time.perf_counter() - start,
        "device": result.device,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` intra-op CPU threads (None: leave torch's setting), restored afterwards."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_lightning(enabled: bool = True) -> Iterator[None]:
    """Hide Lightning's per-Trainer info lines (GPU available ..., seed set ...) during cells."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def build_splits(config: SweepConfig, echo: Echo) -> tuple[dict[int, SplitManifest], FaceDataModule, list[str]]:
    """Each seed's split with the whole training pool (bad data fails here, before any training),
    the data module of the first seed, and every image key of the splits (for the feature store)."""
    pools: dict[int, SplitManifest] = {}
    first: FaceDataModule | None = None
    for seed in config.seeds:
        try:
            data = FaceDataModule(**config.data, seed=seed, train_samples="all")
        except (TypeError, ConfigError) as err:
            raise ConfigError(f"data: {err}") from None
        pools[seed] = m = data.manifest
        first = first or data
        balanced = " (balanced: the same number per identity)" if m.settings.get("balanced_eval") else ""
        echo(
            f"data (seed {seed}): {data.dataset} {data.root or ''} -> {m.num_classes} identities, "
            f"train pool {m.train_pool_size}, val {len(m.val)}, test {len(m.test)} images{balanced}"
        )
    assert first is not None
    return pools, first, all_keys(list(pools.values()))


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


__all__ = ["Echo", "build_splits", "check_methods", "quiet_lightning", "run_cell", "torch_threads"]
