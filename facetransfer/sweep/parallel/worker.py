"""One worker of a sweep: claim a cell, run it, record its row; until every cell of the grid is done.

Any number of workers run this loop on one results folder (docs/scaling.md). A cell is claimed through
its lease (:mod:`~facetransfer.sweep.parallel.lease`), and its row added to ``results.csv`` only while the
lease is still this worker's, so every cell gets exactly one row; a worker with nothing to claim waits,
ready to take over the cell of a worker that dies::

    >>> plan = prepare(config, echo=print)  # doctest: +SKIP
    >>> outcome = run_worker(plan, WorkerSettings(shard=Shard(0, 2)), echo=print)  # doctest: +SKIP
    >>> outcome.ran  # doctest: +SKIP
    [('scratch/scratch_cnn', 16, 0), ...]
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import FaceTransferError
from ...strategies.base import Cell, CellKey
from ...training.malloc_tuning import tune_malloc
from ...training.noise import silence_known_noise
from ..plan import Echo, SweepPlan, prepare, quiet_lightning, run_cell, torch_threads
from ..results import SweepState, locked, row_summary
from .lease import DEFAULT_LEASE_SECONDS, Claim, Heartbeat, Lease, LeaseBook, WorkerIdentity, read_leases
from .run_options import Shard


@dataclass(frozen=True)
class WorkerSettings:
    """How one worker runs.

    Args:
        shard: which cells it tries first (worker ``i`` of ``n``).
        lease_seconds: how long its leases live without a heartbeat.
        threads: torch CPU threads (None: the config's ``num_threads``).
        report: write the report when this worker's row completes the grid (or it finds the grid complete
            and the report missing or older than ``results.csv``).
        progress: a progress bar; quiet: hide Lightning's per-cell info lines.
        tag: prefix of this worker's messages (``[worker 1/4] ``).
    """

    shard: Shard = field(default_factory=Shard)
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    threads: int | None = None
    report: bool = True
    progress: bool = True
    quiet: bool = True
    tag: str = ""


@dataclass
class WorkerOutcome:
    """What one worker did."""

    ran: list[CellKey] = field(default_factory=list)
    taken_over: list[CellKey] = field(default_factory=list)
    completed_grid: bool = False  # this worker recorded the grid's last row
    complete: bool = False  # every cell of the grid has its row


class WorkersFailed(FaceTransferError):
    """Worker processes stopped before every cell of the grid had its row."""


def _try_claim(cell: Cell, plan: SweepPlan, book: LeaseBook, state: SweepState) -> Claim:
    """Under the folder lock: the :class:`Claim` of ``cell`` (without a lease when it has its row)."""
    with locked(plan.output_dir):
        if cell.key in plan.table.finished_keys():
            book.path(cell.key).unlink(missing_ok=True)  # left by a worker killed between its row and this
            return Claim(None)
        state.check_cell(cell.method.name, plan.fingerprints[cell.method.name], cell.seed, plan.splits[str(cell.seed)])
        return book.claim(cell.key, cell.label, plan.digests[cell.method.name])


def record_row(cell: Cell, lease: Lease, row: dict[str, Any], plan: SweepPlan, book: LeaseBook) -> tuple[bool, bool]:
    """Under the folder lock: add the row if the lease is still this worker's, drop the lease.

    Returns ``(recorded, the grid is now complete)``."""
    with locked(plan.output_dir):
        if not book.holds(lease):
            return False, False
        plan.table.append(row)
        book.path(cell.key).unlink(missing_ok=True)
        finished = plan.table.finished_keys()
        return True, all(c.key in finished for c in plan.cells)


def run_worker(plan: SweepPlan, settings: WorkerSettings, echo: Echo) -> WorkerOutcome:
    """Run unfinished cells of ``plan`` until each has its row (see the module's text)."""
    from tqdm.auto import tqdm

    book = LeaseBook(plan.output_dir, WorkerIdentity.here(settings.shard.label), settings.lease_seconds)
    outcome = WorkerOutcome()
    bar = tqdm(total=len(plan.cells), initial=sum(c.key in plan.finished for c in plan.cells), desc="sweep", unit="cell",
               disable=not settings.progress, file=sys.stderr, dynamic_ncols=True)
    write = bar.write if settings.progress else echo

    def say(text: str) -> None:
        write(f"{settings.tag}{text}")

    try:
        with book.alive():
            _claim_and_run(plan, book, settings, outcome, bar, say)
    finally:
        bar.close()
    if settings.report:
        write_report_if_due(plan, outcome, lambda text: echo(f"{settings.tag}{text}"))
    return outcome


def _claim_and_run(plan: SweepPlan, book: LeaseBook, settings: WorkerSettings, outcome: WorkerOutcome, bar: Any,
                   say: Echo) -> None:
    """The loop: claim the first free cell in this worker's order and run it; wait while only
    other workers' cells are left; stop when every cell has its row."""
    state = SweepState(plan.output_dir)
    order = settings.shard.order(plan.cells)
    grid = {c.key for c in plan.cells}
    waiting_for: frozenset[CellKey] = frozenset()
    while True:
        finished = plan.table.finished_keys()
        bar.n = len(grid & finished)
        bar.refresh()
        todo = [c for c in order if c.key not in finished]
        if not todo:
            outcome.complete = True
            return
        claimed = next(((c, a) for c in todo if (a := _try_claim(c, plan, book, state)).lease), None)
        if claimed is None:
            running = [lease for lease in read_leases(book.folder) if lease.cell in {c.key for c in todo}]
            keys = frozenset(lease.cell for lease in running)
            if running and keys != waiting_for:
                say(f"waiting for {len(running)} cell(s) other workers are running: "
                    + "; ".join(f"{lease.label} ({lease.where})" for lease in running))
            waiting_for = keys
            time.sleep(min(5.0, settings.lease_seconds / 4))  # then look again (and find expired leases)
            continue
        waiting_for = frozenset()
        cell, claim = claimed
        if claim.replaced is not None:
            say(f"{cell.label}: taking it over from {claim.replaced.where}: {claim.reason}")
            outcome.taken_over.append(cell.key)
        bar.set_postfix_str(cell.label, refresh=True)
        _run_claimed(cell, claim.lease, plan, book, settings, outcome, say)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _run_claimed(cell: Cell, lease: Lease, plan: SweepPlan, book: LeaseBook, settings: WorkerSettings,
                 outcome: WorkerOutcome, say: Echo) -> None:
    beat = Heartbeat(book, lease)
    try:
        with beat, quiet_lightning(settings.quiet):
            row = run_cell(cell, plan)
    except Exception:
        if beat.lost:  # another worker took it over and reset its folder
            say(f"{cell.label}: stopped; another worker took this cell over (this worker's heartbeat stalled)")
            return
        raise
    recorded, completes = record_row(cell, lease, row, plan, book)
    if not recorded:
        say(f"{cell.label}: finished, but another worker took this cell over meanwhile (this worker's heartbeat "
            "stalled); its row comes from that worker")
        return
    outcome.ran.append(cell.key)
    outcome.completed_grid = outcome.completed_grid or completes
    say(f"{cell.label}: {row_summary(row)}, train {row['train_seconds']:.1f} s ({row['device']})")
    for notice in plan.notices:
        say(f"notice: {notice}")
    plan.notices.clear()


def run_worker_process(config, settings: WorkerSettings, echo: Echo = print) -> WorkerOutcome:
    """A worker started by a launcher: build the plan, check it against the folder's ``sweep.json``
    (the launcher recorded it), run cells."""
    silence_known_noise()
    tune_malloc()
    with torch_threads(settings.threads or config.num_threads):
        plan = prepare(config, echo=lambda _: None, quiet=settings.quiet)
        plan.check_state(write=False)
        return run_worker(plan, settings, echo)


def write_report_if_due(plan: SweepPlan, outcome: WorkerOutcome, echo: Echo) -> None:
    """The report, by the worker that recorded the grid's last row (or by any worker that finds the
    grid complete and the report missing or older than ``results.csv``)."""
    from ..report import REPORT_NAME, write_report

    report, table = plan.output_dir / REPORT_NAME, plan.table.path
    stale = table.is_file() and (not report.is_file() or report.stat().st_mtime < table.stat().st_mtime)
    if outcome.completed_grid or (outcome.complete and stale):
        written = write_report(plan.output_dir, title=plan.config.name)
        echo(f"grid complete: report {written.table_path}, plot {written.plot}")


__all__ = ["WorkerOutcome", "WorkerSettings", "WorkersFailed", "record_row", "run_worker", "run_worker_process",
           "write_report_if_due"]
