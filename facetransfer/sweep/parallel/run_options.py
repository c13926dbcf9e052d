"""How a sweep's cells are spread over processes: ``--workers``, ``--shard``, ``--launcher``, leases, SLURM.

Options of one run, not of the experiment: the results are the same however the cells are spread. The
command's flags are :meth:`ParallelOptions.from_args`' parameters and :class:`SlurmOptions`' fields::

    >>> ParallelOptions.from_args(workers="2", lease_seconds=60).workers
    2
    >>> ParallelOptions.from_args(workers="0")
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: --workers: '0' is not a positive number of worker processes or 'auto'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypeVar, get_args

from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt

from ...errors import ConfigError
from .lease import DEFAULT_LEASE_SECONDS

Launcher = Literal["slurm", "submitit_local"]
LAUNCHERS = get_args(Launcher)
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (0-based, ``--shard i/n``): which cells it turns to first.

    Worker ``i`` of ``n`` tries cells ``i, i+n, i+2n, ...`` of the grid first, so ``n`` workers
    started together hardly ever reach for the same cell; then it helps with the others (from
    the end of the grid, the largest training sets first). Leases decide who runs what, so a
    shard that never starts or dies leaves no cell undone::

        >>> shard = Shard.parse("1/3")
        >>> shard.order(list("abcdefg"))
        ['b', 'e', 'g', 'f', 'd', 'c', 'a']
        >>> Shard.parse("3/2")
        Traceback (most recent call last):
        ...
        facetransfer.errors.ConfigError: --shard: '3/2' is not i/n with 0 <= i < n (e.g. 0/4 ... 3/4)
    """

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` -> ``Shard(i, n)``; anything else is a :class:`ConfigError`."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match or not int(match.group(1)) < int(match.group(2)):
            raise ConfigError(f"--shard: {text!r} is not i/n with 0 <= i < n (e.g. 0/4 ... 3/4)")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def label(self) -> str:
        """``worker 1/4`` (``worker`` alone for a single worker)."""
        return "worker" if self.count == 1 else f"worker {self.index}/{self.count}"

    def order(self, cells: Sequence[T]) -> list[T]:
        """``cells`` in the order this worker tries them: its own share, then the others from the end."""
        own = list(cells[self.index :: self.count])
        others = [c for i, c in enumerate(cells) if i % self.count != self.index]
        return own + others[::-1]


@dataclass(frozen=True)
class SlurmOptions:
    """SLURM (with --launcher slurm): the resources of each array task, one worker of the grid.

    Args:
        slurm_partition: partition
        slurm_time: time limit of each array task in minutes
        slurm_gpus_per_task: GPUs of each array task
        slurm_cpus_per_task: CPU cores of each array task
        slurm_mem_gb: memory of each array task in GB
        slurm_array_parallelism: array tasks running at once (default: all)
        slurm_requeue: put a preempted or timed-out task back in the queue (its cell in progress runs again,
            finished cells are kept)
        slurm_account: account to charge
        slurm_setup: shell lines run before each worker (module load ..., source .venv/bin/activate)
    """

    slurm_partition: Optional[str] = None
    slurm_time: PositiveInt = 240
    slurm_gpus_per_task: NonNegativeInt = 1
    slurm_cpus_per_task: Optional[PositiveInt] = None
    slurm_mem_gb: Optional[PositiveFloat] = None
    slurm_array_parallelism: Optional[PositiveInt] = None
    slurm_requeue: bool = True
    slurm_account: Optional[str] = None
    slurm_setup: list[str] = field(default_factory=list)


def _positive_workers(value: Any) -> int | Literal["auto"]:
    text = str(value).strip()
    if text.lower() == "auto":
        return "auto"
    if not text.isdecimal() or int(text) < 1:
        raise ConfigError(f"--workers: {str(value)!r} is not a positive number of worker processes or 'auto'")
    return int(text)


@dataclass(frozen=True)
class ParallelOptions:
    """Where a sweep's workers run (build it with :meth:`from_args`, whose parameters document it)."""

    workers: int | Literal["auto"] | None = 1
    shard: Shard | None = None
    launcher: Launcher | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    slurm: SlurmOptions | None = None

    @classmethod
    def from_args(cls, workers: Optional[str] = None, shard: Optional[str] = None, launcher: Optional[str] = None,
                  lease_seconds: Optional[float] = None, slurm: Mapping[str, Any] | None = None) -> ParallelOptions:
        """Running the grid in several processes (one ConfigError naming the option when they disagree).

        Args:
            workers: worker processes on this machine, each with one GPU (or a share of the CPU cores); 'auto': one
                per visible GPU (on a CPU, as many as the cores allow at num_threads threads each); with --launcher
                slurm: the number of array tasks (default: one per cell to run)
            shard: I/N: this process is worker I of N started by another scheduler (torchrun, Kubernetes ...); it
                runs cells I, I+N, ... first, then helps with the rest
            launcher: start the workers through submitit: slurm (a job array) or submitit_local (processes on this
                machine, as --workers K does)
            lease_seconds: a worker silent this long is taken for dead and its cell runs again elsewhere (default 300)
            slurm: the --slurm_* options given (SlurmOptions' fields)
        """
        if launcher is not None and launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher: unknown launcher {launcher!r}; known: {', '.join(LAUNCHERS)}")
        given_slurm = {k: v for k, v in (slurm or {}).items() if v is not None}
        if given_slurm and launcher != "slurm":
            raise ConfigError(
                f"--{next(iter(given_slurm))} is an option of the SLURM launcher: add --launcher slurm "
                "(or leave the --slurm_* options out)"
            )
        count = None if workers is None and launcher is not None else _positive_workers(1 if workers is None else workers)
        if launcher == "slurm" and count == "auto":
            raise ConfigError("--workers auto counts this machine's GPUs; with --launcher slurm give the number of array tasks")
        parsed_shard = Shard.parse(shard) if shard is not None else None
        if parsed_shard is not None and (count not in (1, None) or launcher is not None):
            raise ConfigError(
                "--shard i/n makes this process one worker started by another scheduler; it cannot start "
                "workers itself (leave out --workers/--launcher, or leave out --shard)"
            )
        seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else float(lease_seconds)
        if not seconds > 0:
            raise ConfigError(f"--lease_seconds: {lease_seconds!r} is not a positive number of seconds")
        slurm_options = SlurmOptions(**given_slurm) if launcher == "slurm" else None
        return cls(count, parsed_shard, launcher, seconds, slurm_options)  # type: ignore[arg-type]


__all__ = ["LAUNCHERS", "Launcher", "ParallelOptions", "Shard", "SlurmOptions"]
