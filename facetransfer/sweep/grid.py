"""The grid of a sweep: one cell per (training-set size, method, seed), sizes capped at the pool.

Each seed has its own split (test set, val set, train pool); within a seed the test set
is the same for every size ``N`` and the ``N`` training images are the first ``N`` of
the pool, so smaller training sets are inside larger ones. A size above the pool is
capped to the pool (and runs once if it then equals another size)::

    >>> sizes, notes = effective_sizes([50, 100, 5000, "all"], pool_size=2178)
    >>> sizes
    [50, 100, 2178]
    >>> notes[0]
    "train_samples 5000 is more than the training pool of 2178 images: capped to 2178 (= 'all')"
"""

from __future__ import annotations

import hashlib
import json

from ..data.split import SplitManifest
from ..strategies.base import Cell, CellKey
from .config import SweepConfig


def effective_sizes(requested: list[int | str], pool_size: int) -> tuple[list[int], list[str]]:
    """Requested sizes -> distinct sizes that fit the pool (ascending), and notices about capping."""
    sizes: list[int] = []
    notes: list[str] = []
    for n in requested:
        if n == "all":
            size = pool_size
        elif int(n) > pool_size:
            size = pool_size
            notes.append(
                f"train_samples {n} is more than the training pool of {pool_size} images: capped to {pool_size} (= 'all')"
            )
        else:
            size = int(n)
        if size not in sizes:
            sizes.append(size)
    return sorted(sizes), notes


def split_digest(pool: SplitManifest) -> str:
    """Identifies a seed's split by its content (identities, pool order, val, test), not by paths."""
    body = json.dumps([pool.classes, pool.train, pool.val, pool.test], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def build_cells(config: SweepConfig, pools: dict[int, SplitManifest]) -> tuple[list[Cell], list[str]]:
    """All cells, ordered seed -> N -> method (every method's small-N results come first)."""
    cells: list[Cell] = []
    notes: list[str] = []
    for seed in config.seeds:
        pool = pools[seed]
        sizes, seed_notes = effective_sizes(config.train_samples, pool.train_pool_size)
        notes += [n for n in seed_notes if n not in notes]
        for size in sizes:
            cells += [Cell(m, size, seed, pool.train_pool_size) for m in config.methods]
    return cells, notes


__all__ = ["Cell", "CellKey", "build_cells", "effective_sizes", "split_digest"]
