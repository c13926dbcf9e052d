"""How a sweep's cells are spread over processes: ``--workers``, ``--shard``, leases.

These are options of one run of ``facetransfer sweep``, not of the experiment: the same config
runs in one process, in ``--workers 8`` processes on one machine, or as processes that another
scheduler starts with ``--shard i/n``; the results are the same::

    >>> ParallelOptions.from_args(workers="2", lease_seconds=60).workers
    2
    >>> ParallelOptions.from_args(workers="0")
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: --workers: '0' is not a positive number of worker processes or 'auto'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from .lease import DEFAULT_LEASE_SECONDS
from .shard import Shard


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
            allow at ``num_threads`` threads each).
        shard: this process is worker ``i`` of ``n`` started by someone else (``--shard i/n``).
        lease_seconds: a worker that sends no heartbeat for this long is taken for dead and its
            cell is run again by another worker.
    """

    workers: int | Literal["auto"] = 1
    shard: Shard | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    @classmethod
    def from_args(cls, workers: Any = None, shard: str | None = None, lease_seconds: float | None = None) -> ParallelOptions:
        """Check the command-line values (one :class:`ConfigError` naming the option otherwise)."""
        count = _positive_workers(workers)
        parsed_shard = Shard.parse(shard) if shard is not None else None
        if parsed_shard is not None and count != 1:
            raise ConfigError(
                "--shard i/n makes this process one worker started by another scheduler; it cannot start "
                "workers itself (leave out --workers, or leave out --shard)"
            )
        seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else float(lease_seconds)
        if not seconds > 0:
            raise ConfigError(f"--lease_seconds: {lease_seconds!r} is not a positive number of seconds")
        return cls(count, parsed_shard, seconds)


def cpu_count() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


__all__ = ["ParallelOptions", "cpu_count"]
