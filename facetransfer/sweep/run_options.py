"""How a sweep's cells are shared among processes: ``--shard``, leases.

These are options of one run of ``facetransfer sweep``, not of the experiment: the same config
runs in one process, or in processes that another scheduler starts with ``--shard i/n``; the
results are the same::

    >>> ParallelOptions.from_args(shard="1/4", lease_seconds=60).shard
    Shard(index=1, count=4)
    >>> ParallelOptions.from_args(lease_seconds=0)
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: --lease_seconds: 0 is not a positive number of seconds
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .lease import DEFAULT_LEASE_SECONDS
from .shard import Shard


@dataclass(frozen=True)
class ParallelOptions:
    """How this process shares a grid with other workers.

    Args:
        shard: this process is worker ``i`` of ``n`` started by someone else (``--shard i/n``).
        lease_seconds: a worker that sends no heartbeat for this long is taken for dead and its
            cell is run again by another worker.
    """

    shard: Shard | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    @classmethod
    def from_args(cls, shard: str | None = None, lease_seconds: float | None = None) -> ParallelOptions:
        """Check the command-line values (one :class:`ConfigError` naming the option otherwise)."""
        parsed_shard = Shard.parse(shard) if shard is not None else None
        seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else float(lease_seconds)
        if not seconds > 0:
            raise ConfigError(f"--lease_seconds: {lease_seconds!r} is not a positive number of seconds")
        return cls(parsed_shard, seconds)


__all__ = ["ParallelOptions"]
