"""How a sweep's cells are spread over processes: ``--workers``, ``--shard``, ``--launcher``, leases.

These are options of one run of ``facetransfer sweep``, not of the experiment: the same config
runs in one process, in ``--workers 8`` processes on one machine, as a SLURM job array, or as
processes that another scheduler starts with ``--shard i/n``; the results are the same::

    >>> ParallelOptions.from_args(workers="2", lease_seconds=60).workers
    2
    >>> ParallelOptions.from_args(workers="0")
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: --workers: '0' is not a positive number of worker processes or 'auto'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import ConfigError
from .lease import DEFAULT_LEASE_SECONDS
from .shard import Shard

Launcher = Literal["slurm", "submitit_local"]
LAUNCHERS = ("slurm", "submitit_local")


@dataclass(frozen=True)
class SlurmOptions:
    """The resources of each SLURM array task (one worker of the grid).

    ``time_min``: the task's time limit; ``requeue``: a preempted or timed-out task is put back
    in the queue (its cell in progress is run again; finished cells are kept);
    ``array_parallelism``: how many tasks run at once (default: all); ``setup``: shell lines run
    before the worker (``module load ...``, ``source .venv/bin/activate``).
    """

    partition: str | None = None
    time_min: int = 240
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    array_parallelism: int | None = None
    requeue: bool = True
    account: str | None = None
    setup: list[str] = field(default_factory=list)


SLURM_OPTION_KEYS = {
    "slurm_partition": "partition",
    "slurm_time": "time_min",
    "slurm_gpus_per_task": "gpus_per_task",
    "slurm_cpus_per_task": "cpus_per_task",
    "slurm_mem_gb": "mem_gb",
    "slurm_array_parallelism": "array_parallelism",
    "slurm_requeue": "requeue",
    "slurm_account": "account",
    "slurm_setup": "setup",
}


def _positive_workers(value: Any) -> int | Literal["auto"]:
    if value is None:
        return 1
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        count = int(str(value).strip())
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--workers: {str(value)!r} is not a positive number of worker processes or 'auto'")
    return count


@dataclass(frozen=True)
class ParallelOptions:
    """Where a sweep's workers run.

    Args:
        workers: worker processes (``auto``: one per visible GPU; on a CPU, as many as the cores
            allow at ``num_threads`` threads each); with a launcher, the number of array tasks
            (default: one per cell to run).
        shard: this process is worker ``i`` of ``n`` started by someone else (``--shard i/n``).
        launcher: ``slurm`` (a job array through submitit) or ``submitit_local`` (the same
            through submitit's local executor: processes on this machine).
        lease_seconds: a worker that sends no heartbeat for this long is taken for dead and its
            cell is run again by another worker.
        slurm: the resources of each array task.
    """

    workers: int | Literal["auto"] | None = 1
    shard: Shard | None = None
    launcher: Launcher | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    slurm: SlurmOptions | None = None

    @classmethod
    def from_args(
        cls,
        workers: Any = None,
        shard: str | None = None,
        launcher: str | None = None,
        lease_seconds: float | None = None,
        slurm: Mapping[str, Any] | None = None,
    ) -> ParallelOptions:
        """Check the command-line values (one :class:`ConfigError` naming the option otherwise).

        ``slurm``: the ``--slurm_*`` values given (``{"slurm_partition": "gpu", ...}``).
        """
        if launcher is not None and launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher: unknown launcher {launcher!r}; known: {', '.join(LAUNCHERS)}")
        given_slurm = {k: v for k, v in (slurm or {}).items() if v is not None}
        unknown = [k for k in given_slurm if k not in SLURM_OPTION_KEYS]
        if unknown:
            raise ConfigError(f"unknown option --{unknown[0]}; SLURM options: --{', --'.join(SLURM_OPTION_KEYS)}")
        if given_slurm and launcher != "slurm":
            raise ConfigError(
                f"--{next(iter(given_slurm))} is an option of the SLURM launcher: add --launcher slurm "
                "(or leave the --slurm_* options out)"
            )
        if workers is None and launcher is None:
            workers = 1
        count = None if workers is None else _positive_workers(workers)
        if launcher is not None and count == "auto":
            raise ConfigError("--workers auto counts this machine's GPUs; with --launcher give the number of array tasks")
        parsed_shard = Shard.parse(shard) if shard is not None else None
        if parsed_shard is not None and (count not in (1, None) or launcher is not None):
            raise ConfigError(
                "--shard i/n makes this process one worker started by another scheduler; it cannot start "
                "workers itself (leave out --workers/--launcher, or leave out --shard)"
            )
        seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else float(lease_seconds)
        if not seconds > 0:
            raise ConfigError(f"--lease_seconds: {lease_seconds!r} is not a positive number of seconds")
        slurm_options = None
        if launcher == "slurm":
            slurm_options = SlurmOptions(**{SLURM_OPTION_KEYS[k]: v for k, v in given_slurm.items()})
            if slurm_options.setup and not all(isinstance(line, str) for line in slurm_options.setup):
                raise ConfigError(f"--slurm_setup: {slurm_options.setup!r} is not a list of shell lines")
        return cls(count, parsed_shard, launcher, seconds, slurm_options)  # type: ignore[arg-type]

    @property
    def is_single(self) -> bool:
        """One worker in this process (the default, and ``--shard i/n``)."""
        return self.launcher is None and self.workers == 1


def cpu_count() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


__all__ = ["LAUNCHERS", "SLURM_OPTION_KEYS", "Launcher", "ParallelOptions", "SlurmOptions", "cpu_count"]
