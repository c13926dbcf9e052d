"""``facetransfer sweep ... --workers K``: K worker processes on this machine, one results folder.

Each worker is a fresh (spawned) Python process running :func:`~facetransfer.sweep.parallel.worker.run_worker`.
On a GPU machine worker ``k`` sees one GPU, ``CUDA_VISIBLE_DEVICES`` set in its environment before
it starts (so before torch initialises CUDA), ``k % G`` of the ``G`` visible ones. On a CPU the
torch threads (``num_threads``, default all cores) are divided among the workers. This process
waits for them and writes the report when the grid is complete. A worker that dies leaves its
cell to the others at once (its liveness lock is gone, see :mod:`~facetransfer.sweep.parallel.lease`)::

    >>> place_workers(2, config)  # doctest: +SKIP
    [Placement(gpu=None, threads=1), Placement(gpu=None, threads=1)]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from ..config import SweepConfig
from ..plan import SweepPlan
from .lease import read_leases
from .run_options import ParallelOptions, cpu_count
from .shard import Shard
from .worker import WorkerSettings, WorkersFailed, worker_process_main

Echo = Callable[[str], None]
GPU_ACCELERATORS = ("auto", "gpu", "cuda")
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Placement:
    """Where one worker runs: a GPU (its ``CUDA_VISIBLE_DEVICES`` entry) or none, and its torch threads."""

    gpu: str | None
    threads: int

    def environment(self) -> dict[str, str]:
        """Variables the worker process starts with (BLAS threads only where the user set none)."""
        env = {name: str(self.threads) for name in BLAS_THREAD_VARIABLES if name not in os.environ}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def describe(self) -> str:
        where = f"GPU {self.gpu}" if self.gpu is not None else "CPU"
        return f"{where}, {self.threads} torch thread{'s' if self.threads > 1 else ''}"


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_gpus(config: SweepConfig) -> list[str]:
    """The GPUs workers are pinned to: none when the sweep trains on the CPU."""
    accelerator = str(config.trainer.get("accelerator", "auto"))
    accelerators = {accelerator, *(str(m.trainer.get("accelerator", accelerator)) for m in config.methods)}
    if not accelerators & set(GPU_ACCELERATORS):
        return []
    return visible_gpus()


def resolve_workers(workers: int | str | None, config: SweepConfig) -> int:
    """``auto`` -> one worker per visible GPU, or on a CPU as many as the cores allow at
    ``num_threads`` threads each (1 each when it is not set)."""
    if workers != "auto":
        return int(workers or 1)
    gpus = worker_gpus(config)
    return len(gpus) if gpus else max(1, cpu_count() // (config.num_threads or 1))


def place_workers(count: int, config: SweepConfig) -> list[Placement]:
    """One GPU per worker (round robin when there are more workers than GPUs); CPU threads divided."""
    gpus = worker_gpus(config)
    threads = max(1, (config.num_threads or cpu_count()) // count)
    if gpus and count > 1:
        _check_one_device_per_cell(config, count)
    return [Placement(gpus[k % len(gpus)] if gpus else None, threads) for k in range(count)]


def _check_one_device_per_cell(config: SweepConfig, count: int) -> None:
    for index, method in enumerate(config.methods):
        devices = method.trainer.get("devices", config.trainer.get("devices", "auto"))
        if str(devices) not in ("auto", "1", "-1", "[0]"):
            raise ConfigError(
                f"methods[{index}] ({method.name}): trainer.devices {devices!r} with --workers {count}: each worker "
                "has one GPU, so a cell uses one device (devices: auto or 1); run multi-GPU cells with --workers 1"
            )


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (a spawned child inherits them), then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def describe_exit(code: int | None) -> str:
    """``exit status 2`` / ``killed by SIGKILL``."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_local_workers(
    plan: SweepPlan, count: int, parallel: ParallelOptions, *, progress: bool, quiet: bool, echo: Echo
) -> list[tuple[WorkerSettings, int]]:
    """Start ``count`` worker processes on ``plan``'s folder and wait for them.

    Returns each worker's settings and exit code. Raises :class:`WorkersFailed` when workers
    stopped and left cells without a row."""
    from tqdm.auto import tqdm

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: CUDA starts with its own devices
    run_id = uuid.uuid4().hex[:8]
    started: list[tuple[Any, WorkerSettings, Placement]] = []
    for k, place in enumerate(place_workers(count, plan.config)):
        settings = WorkerSettings(
            shard=Shard(k, count), lease_seconds=parallel.lease_seconds, threads=place.threads, report="none",
            progress=False, quiet=quiet, holder=f"{run_id}-{k}", tag=f"[worker {k}/{count}] ",
        )
        with environment(place.environment()):
            process = context.Process(target=worker_process_main, args=(plan.config, settings), name=f"sweep worker {k}")
            process.start()
        started.append((process, settings, place))
    echo(f"{count} workers: " + ", ".join(f"worker {s.shard.index}/{count} pid {p.pid} ({place.describe()})"
                                          for p, s, place in started))
    grid = {c.key for c in plan.cells}
    bar = tqdm(total=len(grid), initial=len(grid & plan.finished), desc="sweep", unit="cell", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    alive = {p.sentinel: (p, s) for p, s, _ in started}
    exits: list[tuple[WorkerSettings, int]] = []
    try:
        while alive:
            for sentinel in multiprocessing.connection.wait(list(alive), timeout=1.0):
                process, settings = alive.pop(sentinel)
                process.join()
                exits.append((settings, process.exitcode))
                if process.exitcode != 0:
                    held = [lease.label for lease in read_leases(plan.output_dir) if lease.holder == settings.holder]
                    again = f"; the other workers run its cell {held[0]} again" if held else ""
                    echo(f"{settings.shard.label} (pid {process.pid}) stopped: {describe_exit(process.exitcode)}{again}")
            bar.n = len(grid & plan.table.finished_keys())
            bar.refresh()
    except KeyboardInterrupt:
        for process, _ in alive.values():  # they got the same Ctrl-C; give them time to hand back their cells
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
        raise
    finally:
        bar.close()
    missing = grid - plan.table.finished_keys()
    failed = [(s, code) for s, code in exits if code != 0]
    if missing and failed:
        stops = ", ".join(f"{s.shard.label}: {describe_exit(code)}" for s, code in failed)
        raise WorkersFailed(
            f"{len(failed)} of {count} workers stopped ({stops}) and {len(missing)} cell(s) have no row; finished "
            f"cells are in {plan.table.path}: run the same command to resume"
        )
    return exits


__all__ = [
    "Placement", "describe_exit", "environment", "place_workers", "resolve_workers", "run_local_workers",
    "visible_gpus", "worker_gpus",
]
