"""``facetransfer sweep --status DIR``: which cells are done, running (by whom, since when), pending,
and how long the rest should take, from a results folder alone (no config needed)::

    >>> print(format_status(sweep_status("results/demo")))  # doctest: +SKIP
    sweep demo (results/demo): 15 cells: 9 done, 2 running, 4 pending
    running:
      finetune/mobilenet_v2 N=48 seed=0: worker 1/2 on node7 (pid 4242), since 10:02:11 UTC (1.2 min), heartbeat 3 s ago
    ...
    time left: ~2.5 min of cell time, ~1.3 min with the 2 running workers (from 9 finished cells)

docs/scaling.md tells how the time left is estimated.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...strategies.base import CellKey
from ..results import RESULTS_NAME, STATE_NAME, ResultsTable, read_state, row_key
from .lease import Lease, read_leases, why_dead

SHOWN_PENDING = 12


@dataclass
class SweepStatus:
    """The cells of a results folder's grid by state, and the estimated time left (seconds)."""

    folder: Path
    name: str | None
    grid: list[CellKey]
    labels: dict[CellKey, str]
    done: list[dict[str, Any]] = field(default_factory=list)
    running: list[Lease] = field(default_factory=list)
    stale: list[Lease] = field(default_factory=list)  # of workers that ended or went silent: their cells are pending
    pending: list[CellKey] = field(default_factory=list)
    cell_seconds_left: float | None = None  # None: no finished cell to estimate from

    @property
    def workers(self) -> int:
        """Workers running a cell now."""
        return len({lease.holder for lease in self.running})

    @property
    def wall_seconds_left(self) -> float | None:
        return None if self.cell_seconds_left is None else self.cell_seconds_left / max(1, self.workers)


def _estimate(key: CellKey, done: list[dict[str, Any]]) -> float:
    """Mean seconds of the finished cells like ``key``: same method and N, else same method, else all."""
    method, size, _ = key
    like = [r for r in done if r["method"] == method]
    return statistics.fmean(r["cell_seconds"] for r in [r for r in like if r["train_samples"] == size] or like or done)


def sweep_status(folder: str | os.PathLike, now: float | None = None) -> SweepStatus:
    """Read ``results.csv``, ``sweep.json`` and the leases of ``folder``."""
    folder = Path(folder)
    results = folder / RESULTS_NAME
    state = read_state(folder)
    leases = read_leases(folder)
    if not results.is_file() and not state and not leases:
        raise ConfigError(
            f"--status {folder}: no sweep there (no {RESULTS_NAME}, {STATE_NAME} or leases); "
            "give the output_dir of a sweep (default results/<name>)"
        )
    now = time.time() if now is None else now
    rows = ResultsTable(results).rows()
    grid_entries = [g for g in state.get("grid", []) if isinstance(g, dict)]
    grid = [row_key(g) for g in grid_entries]
    labels = {key: str(g.get("label", key)) for key, g in zip(grid, grid_entries)}
    by_key = {row_key(r): r for r in rows}
    if not grid:  # written before sweep.json recorded its grid: what the rows and leases show
        grid = list(dict.fromkeys([*by_key, *(lease.cell for lease in leases)]))
    for lease in leases:
        labels.setdefault(lease.cell, lease.label)
    for key in grid:
        labels.setdefault(key, f"{key[0]} N={key[1]} seed={key[2]}")
    status = SweepStatus(folder, state.get("name"), grid, labels)
    live = {lease.cell: lease for lease in leases if not why_dead(folder, lease, now)}
    status.done = [by_key[k] for k in grid if k in by_key]
    status.running = [live[k] for k in grid if k in live and k not in by_key]
    status.stale = [lease for lease in leases if lease.cell not in live and lease.cell not in by_key]
    status.pending = [k for k in grid if k not in by_key and k not in live]
    if status.done:  # a running cell counts with its estimate less the time it has run
        status.cell_seconds_left = sum(_estimate(key, status.done) for key in status.pending) + sum(
            max(0.0, _estimate(lease.cell, status.done) - (now - lease.started_at)) for lease in status.running
        )
    return status


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_status(status: SweepStatus, now: float | None = None) -> str:
    """The status as text for a terminal."""
    now = time.time() if now is None else now
    name = f"sweep {status.name}" if status.name else "sweep"
    lines = [
        f"{name} ({status.folder}): {len(status.grid)} cells: {len(status.done)} done, {len(status.running)} running, "
        f"{len(status.pending)} pending"
    ]
    if status.running:
        lines.append("running:")
        for lease in status.running:
            attempt = f", attempt {lease.attempt}" if lease.attempt > 1 else ""
            lines.append(
                f"  {lease.label}: {lease.where}, since {_clock(lease.started_at)} ({_duration(now - lease.started_at)}), "
                f"heartbeat {_duration(max(0.0, lease.age(now)))} ago{attempt}"
            )
    if status.stale:
        lines.append("stopped workers (their cells run again once a worker looks; pending until then):")
        for lease in status.stale:
            lines.append(f"  {lease.label}: {lease.where}, last heartbeat {_duration(lease.age(now))} ago")
    if status.pending:
        shown = [status.labels[k] for k in status.pending[:SHOWN_PENDING]]
        more = len(status.pending) - len(shown)
        lines.append("pending: " + ", ".join(shown) + (f", and {more} more" if more > 0 else ""))
    if status.cell_seconds_left is None:
        lines.append("time left: no estimate yet (no finished cell)")
    elif not status.pending and not status.running:
        total = sum(r["cell_seconds"] for r in status.done)
        lines.append(f"complete: {_duration(total)} of cell time in all")
    else:
        workers = status.workers
        wall = f", ~{_duration(status.wall_seconds_left)} with the {workers} running workers" if workers > 1 else ""
        lines.append(
            f"time left: ~{_duration(status.cell_seconds_left)} of cell time{wall} "
            f"(from {len(status.done)} finished cell{'s' if len(status.done) > 1 else ''})"
        )
    return "\n".join(lines)


__all__ = ["SweepStatus", "format_status", "sweep_status"]
