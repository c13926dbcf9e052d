"""``--shard i/n``: which cells a worker turns to first, when ``n`` workers share one grid.

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

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from ...errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (0-based)."""

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


__all__ = ["Shard"]
