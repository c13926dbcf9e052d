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
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._noise import silence_known_noise
from ..data import FaceDataModule
from ..data.split import SplitManifest
from ..errors import ConfigError, FaceTransferError
from ..precision import autocast_dtype
from ..strategies import get_strategy
from .config import MethodSpec, SweepConfig
from .feature_store import FeatureStore, all_keys
from .grid import Cell, CellKey
from .lease import lease_alive, read_leases, remove_stale_lease_temporaries
from .report import REPORT_NAME, Report, read_report, write_report
from .results import RESULTS_NAME, remove_stale_temporaries

if TYPE_CHECKING:
    from .plan import SweepPlan
    from .run_options import ParallelOptions

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
    workers: int = 1
    jobs: list[Any] = field(default_factory=list)  # submitit's jobs (--launcher)

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


def run_sweep(
    config: SweepConfig,
    *,
    progress: bool = True,
    report: bool = True,
    dry_run: bool = False,
    quiet: bool = True,
    echo: Echo | None = None,
    parallel: ParallelOptions | None = None,
) -> SweepResult:
    """Run the grid of ``config`` (skipping finished cells); return what was done.

    Args:
        progress: a progress bar over the grid showing the cell in progress.
        report: write the report (Markdown, PNG, TensorBoard) at the end.
        dry_run: check everything and list the cells to run, train nothing.
        quiet: hide Lightning's per-cell info lines.
        echo: where messages go (default: print).
        parallel: where the workers run (``--workers``, ``--shard``, ``--launcher``); default:
            one worker, this process.
    """
    from .plan import prepare
    from .run_options import ParallelOptions

    echo = echo or print
    parallel = parallel or ParallelOptions()
    if parallel.launcher is not None:
        from .submitit_launcher import check_launcher

        check_launcher(parallel.launcher)
    silence_known_noise()
    start = time.perf_counter()
    out = config.output_dir
    with torch_threads(config.num_threads):
        remove_stale_temporaries(out)
        remove_stale_lease_temporaries(out)
        plan = prepare(config, echo, quiet)
        cells, pending = plan.cells, plan.pending
        result = SweepResult(out, cells, skipped=[c.key for c in cells if c.key in plan.finished])
        with quiet_lightning(quiet):
            check_methods(config, [m for m in config.methods if any(c.method is m for c in pending)])
        sizes = sorted({c.train_samples for c in cells})
        echo(
            f"grid: {len(cells)} cells = {len(config.methods)} methods x {len(sizes)} sizes {sizes} x "
            f"{len(config.seeds)} seed(s); {len(result.skipped)} already in {plan.table.path}, {len(pending)} to run"
        )
        running = {lease.cell: lease for lease in read_leases(out) if lease_alive(out, lease)}
        elsewhere = sum(c.key in running for c in pending)
        if elsewhere:
            echo(f"{elsewhere} of them are running in other workers now")
        if dry_run:
            plan.check_state(write=False)
            for cell in pending:
                lease = running.get(cell.key)
                echo(f"  running: {cell.label} ({lease.where})" if lease else f"  would run: {cell.label}")
            return result
        plan.check_state()
        if parallel.launcher is not None and pending:
            from .submitit_launcher import submit_workers

            result.jobs = submit_workers(plan, parallel, report=report, quiet=quiet, echo=echo)
            if parallel.launcher == "slurm":
                return result
            finished = plan.table.finished_keys()
            result.ran = [c.key for c in pending if c.key in finished]
            result.workers = len(result.jobs)
            report_policy = "finisher"
        else:
            result.workers, report_policy = _run_here(plan, parallel, result, report=report, progress=progress, quiet=quiet,
                                                      echo=echo)

    if report and plan.table.path.is_file():
        if report_policy == "end":
            result.report = write_report(out, title=config.name)
        elif report_policy == "finisher" and (out / REPORT_NAME).is_file() and len(result.ran) + len(result.skipped) == len(cells):
            result.report = read_report(out)  # written by the worker that recorded the last row
        if result.report is not None:
            _echo_report(result.report, out, echo)
    result.seconds = time.perf_counter() - start
    by = f" by {result.workers} workers" if result.workers > 1 else ""
    echo(f"sweep {config.name}: {len(result.ran)} cells run{by}, {len(result.skipped)} skipped, {result.seconds:.0f} s wall time")
    return result


def _run_here(
    plan: SweepPlan, parallel: ParallelOptions, result: SweepResult, *, report: bool, progress: bool, quiet: bool,
    echo: Echo,
) -> tuple[int, str]:
    """Run the pending cells on this machine: in this process, or in ``--workers K`` processes.

    Returns the number of workers and who writes the report (``end``: the caller; ``finisher``:
    the worker that recorded the last row, for a ``--shard`` worker)."""
    from .local_workers import resolve_workers, run_local_workers
    from .shard import Shard
    from .worker import WorkerSettings, run_worker, write_report_if_due

    workers = min(resolve_workers(parallel.workers, plan.config), len(plan.pending))  # no worker without a cell
    if workers > 1:
        run_local_workers(plan, workers, parallel, progress=progress, quiet=quiet, echo=echo)
        finished = plan.table.finished_keys()
        result.ran = [c.key for c in plan.pending if c.key in finished]
        return workers, "end"
    shard = parallel.shard or Shard()
    policy = "end" if parallel.shard is None else "finisher" if report else "none"
    settings = WorkerSettings(
        shard=shard, lease_seconds=parallel.lease_seconds, report=policy, progress=progress, quiet=quiet,
        tag="" if parallel.shard is None else f"[{shard.label}] ",
    )
    outcome = run_worker(plan, plan.context(), settings, echo)
    result.ran = outcome.ran
    result.features_computed, result.features_loaded = outcome.features_computed, outcome.features_loaded
    if policy == "finisher" and not write_report_if_due(plan, outcome, lambda text: None):
        return 1, "none"  # another worker recorded the last row and writes it
    return 1, policy


def _echo_report(report: Report, out: Path, echo: Echo) -> None:
    echo("")
    echo(report.markdown)
    echo(f"results: {out / RESULTS_NAME}")
    echo(f"table:   {report.table_path}")
    echo(f"plot:    {report.plot}")
    echo(f"TensorBoard (figure, table and every cell's curves): tensorboard --logdir {out / 'logs'}")


__all__ = ["SweepContext", "SweepResult", "build_splits", "check_methods", "device_label", "quiet_lightning", "run_cell", "run_sweep"]
