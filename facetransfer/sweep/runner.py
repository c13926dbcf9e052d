"""Running a whole sweep: check everything, run the unfinished cells, write the report.

Everything that can be wrong (config keys, data, pretrained weights, trainer options) fails before the
first cell trains; a killed sweep loses at most its cells in progress, and running it again continues::

    >>> from facetransfer.sweep import load_sweep_config, run_sweep
    >>> result = run_sweep(load_sweep_config("configs/experiments/demo.yaml"))  # doctest: +SKIP
    >>> print(result.report.markdown)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..strategies.base import Cell, CellKey
from ..training.noise import silence_known_noise
from .config import SweepConfig
from .parallel.run_options import ParallelOptions, Shard
from .plan import Echo, SweepPlan, check_methods, prepare, quiet_lightning, torch_threads
from .report import REPORT_NAME, Report, read_report
from .results import RESULTS_NAME, remove_stale_temporaries


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


def run_sweep(config: SweepConfig, *, progress: bool = True, report: bool = True, dry_run: bool = False,
              quiet: bool = True, echo: Echo | None = None, parallel: ParallelOptions | None = None) -> SweepResult:
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
    echo = echo or print
    parallel = parallel or ParallelOptions()
    if parallel.launcher is not None:
        from .parallel.launcher import check_launcher

        check_launcher(parallel.launcher)
    silence_known_noise()
    start = time.perf_counter()
    out = config.output_dir
    with torch_threads(config.num_threads):
        remove_stale_temporaries(out)
        plan = prepare(config, echo, quiet)
        cells, pending = plan.cells, plan.pending
        result = SweepResult(out, cells, skipped=[c.key for c in cells if c.key in plan.finished])
        with quiet_lightning(quiet):
            check_methods(config, [m for m in config.methods if any(c.method is m for c in pending)])
        sizes = sorted({c.size for c in cells})
        unit = "sizes" if config.train_identities is None else "numbers of people"
        echo(
            f"grid: {len(cells)} cells = {len(config.methods)} methods x {len(sizes)} {unit} {sizes} x "
            f"{len(config.seeds)} seed(s); {len(result.skipped)} already in {plan.table.path}, {len(pending)} to run"
        )
        running = plan.running()
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
        if not _run(plan, parallel, result, report=report, progress=progress, quiet=quiet, echo=echo):
            return result  # a SLURM job array runs the cells
    if report and (out / REPORT_NAME).is_file() and {c.key for c in cells} <= plan.table.finished_keys():
        result.report = read_report(out)  # by the worker that recorded the grid's last row
        echo(f"\n{result.report.describe()}")
    result.seconds = time.perf_counter() - start
    by = f" by {result.workers} workers" if result.workers > 1 else ""
    echo(f"sweep {config.name}: {len(result.ran)} cells run{by}, {len(result.skipped)} skipped, {result.seconds:.0f} s wall time")
    return result


def _run(plan: SweepPlan, parallel: ParallelOptions, result: SweepResult, *, report: bool, progress: bool, quiet: bool,
         echo: Echo) -> bool:
    """Run the pending cells: by workers a launcher starts (``--workers K``, ``--launcher``), or by one
    worker in this process. False when they were submitted to SLURM and run later."""
    from .parallel.launcher import submit_workers, worker_count
    from .parallel.worker import WorkerSettings, run_worker

    count = worker_count(parallel, plan) if plan.pending else 1
    if parallel.launcher is not None and plan.pending or count > 1:
        result.jobs = submit_workers(plan, parallel, count, report=report, quiet=quiet, progress=progress, echo=echo)
        result.workers = len(result.jobs)
        finished = plan.table.finished_keys()
        result.ran = [c.key for c in plan.pending if c.key in finished]
        return parallel.launcher != "slurm"
    shard = parallel.shard or Shard()
    settings = WorkerSettings(shard=shard, lease_seconds=parallel.lease_seconds, report=report, progress=progress,
                              quiet=quiet, tag="" if parallel.shard is None else f"[{shard.label}] ")
    outcome = run_worker(plan, settings, echo)
    result.ran = outcome.ran
    result.features_computed, result.features_loaded = plan.feature_store.computed, plan.feature_store.loaded
    return True


__all__ = ["SweepResult", "run_sweep"]
