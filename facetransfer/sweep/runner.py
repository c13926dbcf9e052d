"""Running a whole sweep: check everything, run the unfinished cells, write the report.

Everything that can be wrong (config keys, data, pretrained weights, trainer options)
fails before the first cell trains. Each finished cell adds one row to ``results.csv``
at once, so a killed sweep loses at most the cell in progress, and running it again
continues where it stopped::

    >>> from facetransfer.sweep import load_sweep_config, run_sweep
    >>> result = run_sweep(load_sweep_config("configs/experiments/demo.yaml"))  # doctest: +SKIP
    >>> print(result.report.markdown)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .._noise import silence_known_noise
from ..data import FaceDataModule
from ..data.split import SplitManifest
from ..errors import ConfigError, FaceTransferError
from ..precision import autocast_dtype
from ..strategies import get_strategy
from .config import MethodSpec, SweepConfig
from .feature_store import FeatureStore, all_keys
from .grid import Cell, CellKey, build_cells, split_digest
from .report import Report, write_report
from .results import RESULTS_NAME, ResultsTable, SweepState, remove_stale_temporaries, sweep_lock

Echo = Callable[[str], None]


def device_label(device: torch.device) -> str:
    """``NVIDIA H200`` for a CUDA device, ``cpu (2 cores)`` for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        return f"cpu ({cores} cores)"
    return device.type


def feature_device(trainer_args: dict[str, Any]) -> torch.device:
    """Where solver cells extract features: the sweep's accelerator (CUDA when available)."""
    accelerator = str(trainer_args.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class SweepContext:
    """What every cell of a sweep shares: the config, each seed's split, the feature store."""

    config: SweepConfig
    pools: dict[int, SplitManifest]
    feature_store: FeatureStore
    logs_dir: Path
    notices: list[str] = field(default_factory=list)

    def cell_dir(self, cell: Cell) -> Path:
        return self.logs_dir / cell.method.slug / cell.folder

    def manifest(self, cell: Cell) -> SplitManifest:
        return self.pools[cell.seed].subset(cell.train_samples)

    @property
    def feature_device(self) -> torch.device:
        return feature_device(self.config.trainer)

    @property
    def feature_autocast(self) -> torch.dtype | None:
        """The dtype a Lightning cell would extract features with (so both kinds of cell share the cache)."""
        from ..trainer import default_precision

        trainer = self.config.trainer
        precision = trainer.get("precision") or default_precision(trainer.get("accelerator", "auto"))
        return autocast_dtype(precision, self.feature_device)


def run_cell(cell: Cell, ctx: SweepContext) -> dict[str, Any]:
    """Run one cell with its strategy; returns its results row."""
    start = time.perf_counter()
    manifest = ctx.manifest(cell)
    result = get_strategy(cell.method.strategy).run(cell, ctx)
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


@dataclass
class SweepResult:
    """What a call of :func:`run_sweep` did."""

    output_dir: Path
    cells: list[Cell]
    ran: list[CellKey] = field(default_factory=list)
    skipped: list[CellKey] = field(default_factory=list)
    report: Report | None = None
    features_computed: int = 0
    features_loaded: int = 0
    seconds: float = 0.0

    @property
    def results_csv(self) -> Path:
        return self.output_dir / RESULTS_NAME


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


def _located(where: str, err: Exception) -> ConfigError:
    return ConfigError(f"{where}: {err}")


def build_splits(config: SweepConfig, echo: Echo) -> tuple[dict[int, SplitManifest], FaceDataModule, list[str]]:
    """Each seed's split with the whole training pool (bad data fails here, before any training),
    the data module of the first seed, and every image key of the splits (for the feature store)."""
    pools: dict[int, SplitManifest] = {}
    keys: set[str] = set()
    first: FaceDataModule | None = None
    for seed in config.seeds:
        try:
            data = FaceDataModule(**config.data, seed=seed, train_samples="all")
        except TypeError as err:
            raise _located("data", err) from None
        except ConfigError as err:
            raise _located("data", err) from None
        m = data.manifest
        keys.update(all_keys([m]))
        pools[seed] = m
        first = first or data
        balanced = " (balanced: the same number per identity)" if m.settings.get("balanced_eval") else ""
        echo(
            f"data (seed {seed}): {data.dataset} {data.root or ''} -> {m.num_classes} identities, "
            f"train pool {m.train_pool_size}, val {len(m.val)}, test {len(m.test)} images{balanced}"
        )
    assert first is not None
    return pools, first, sorted(keys)


def check_methods(config: SweepConfig, methods: list[MethodSpec]) -> None:
    """Build what each method's cells need once: bad options and missing weights fail now."""
    for method in methods:
        where = f"methods[{config.methods.index(method)}] ({method.name})"
        try:
            get_strategy(method.strategy).check(method, config)
        except FaceTransferError as err:
            raise type(err)(f"{where}: {err}") from None
        except Exception as err:  # Lightning and torch raise several types for bad options
            raise _located(where, err) from None


def _state_extra(config: SweepConfig) -> dict[str, Any]:
    order = config.method_order or [m.name for m in config.methods]
    return {"name": config.name, "method_order": order, "config": config.to_dict()}


def run_sweep(
    config: SweepConfig,
    *,
    progress: bool = True,
    report: bool = True,
    dry_run: bool = False,
    quiet: bool = True,
    echo: Echo | None = None,
) -> SweepResult:
    """Run the grid of ``config`` (skipping finished cells); return what was done.

    Args:
        progress: a progress bar over the grid showing the cell in progress.
        report: write the report (Markdown, PNG, TensorBoard) at the end.
        dry_run: check everything and list the cells to run, train nothing.
        quiet: hide Lightning's per-cell info lines.
        echo: where messages go (default: print).
    """
    echo = echo or print
    silence_known_noise()
    start = time.perf_counter()
    out = config.output_dir
    with sweep_lock(out), torch_threads(config.num_threads):
        remove_stale_temporaries(out)
        with quiet_lightning(quiet):
            pools, data, image_keys = build_splits(config, echo)
        cells, notes = build_cells(config, pools)
        for note in notes:
            echo(f"notice: {note}")
        smallest = min(c.train_samples for c in cells)
        for method in config.methods:
            need = get_strategy(method.strategy).min_train_samples
            if smallest < need:
                raise ConfigError(f"train_samples: {method.strategy} needs at least {need} training images, got {smallest}")
        table = ResultsTable(out / RESULTS_NAME)
        finished = table.finished_keys()
        pending = [c for c in cells if c.key not in finished]
        result = SweepResult(out, cells, skipped=[c.key for c in cells if c.key in finished])
        with quiet_lightning(quiet):
            check_methods(config, [m for m in config.methods if any(c.method is m for c in pending)])

        state = SweepState(out)
        splits = {str(seed): split_digest(pool) for seed, pool in pools.items()}
        fingerprints = {m.name: m.fingerprint(config.data) for m in config.methods}
        sizes = sorted({c.train_samples for c in cells})
        echo(
            f"grid: {len(cells)} cells = {len(config.methods)} methods x {len(sizes)} sizes {sizes} x "
            f"{len(config.seeds)} seed(s); {len(result.skipped)} already in {table.path}, {len(pending)} to run"
        )
        if dry_run:
            state.check_and_update(splits, fingerprints, finished, _state_extra(config), write=False)
            for cell in pending:
                echo(f"  would run: {cell.label}")
            return result
        state.check_and_update(splits, fingerprints, finished, _state_extra(config))

        store = FeatureStore(
            config.feature_cache_dir,
            data.source,
            image_keys,
            face_crop=data.face_crop,
            batch_size=max(64, data.eval_batch_size),
            num_workers=data.num_workers,
        )
        ctx = SweepContext(config, pools, store, out / "logs")
        _run_cells(pending, ctx, table, result, progress, quiet, echo)
        result.features_computed, result.features_loaded = store.computed, store.loaded

    if report and table.path.is_file():
        result.report = write_report(out, title=config.name)
        echo("")
        echo(result.report.markdown)
        echo(f"results: {table.path}")
        echo(f"table:   {result.report.table_path}")
        echo(f"plot:    {result.report.plot}")
        echo(f"TensorBoard (figure, table and every cell's curves): tensorboard --logdir {out / 'logs'}")
    result.seconds = time.perf_counter() - start
    echo(f"sweep {config.name}: {len(result.ran)} cells run, {len(result.skipped)} skipped, {result.seconds:.0f} s wall time")
    return result


def _run_cells(
    pending: list[Cell], ctx: SweepContext, table: ResultsTable, result: SweepResult, progress: bool, quiet: bool, echo: Echo
) -> None:
    from tqdm.auto import tqdm

    total = len(result.cells)
    bar = tqdm(total=total, initial=total - len(pending), desc="sweep", unit="cell", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    say = bar.write if progress else echo
    try:
        for cell in pending:
            bar.set_postfix_str(cell.label, refresh=True)
            with quiet_lightning(quiet):
                row = run_cell(cell, ctx)
            table.append(row)
            result.ran.append(cell.key)
            say(
                f"{cell.label}: top-1 {row['test_top1'] * 100:.1f}%, top-5 {row['test_top5'] * 100:.1f}%, "
                f"train {row['train_seconds']:.1f} s ({row['device']})"
            )
            for notice in ctx.notices:
                say(f"notice: {notice}")
            ctx.notices.clear()
            bar.update(1)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    finally:
        bar.close()


__all__ = ["SweepContext", "SweepResult", "build_splits", "check_methods", "device_label", "quiet_lightning", "run_cell", "run_sweep"]
