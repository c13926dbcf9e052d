"""What a sweep is about to do: each seed's split, the grid's cells, which of them are finished.

Every process of a sweep (the one you start and each worker) builds the same plan from the
config: splits are seeded, so every worker has the same cells and the same split digests,
which it checks against ``sweep.json`` before it runs anything::

    >>> plan = prepare(load_sweep_config("configs/experiments/demo.yaml"), echo=print)  # doctest: +SKIP
    >>> len(plan.cells), len(plan.pending)  # doctest: +SKIP
    (15, 15)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..data import FaceDataModule
from ..data.split import SplitManifest
from ..errors import ConfigError
from ..strategies import get_strategy
from .config import SweepConfig
from .context import SweepContext, build_splits, quiet_lightning
from .feature_store import FeatureStore
from .grid import Cell, CellKey, build_cells, split_digest
from .parallel.lease import fingerprint_digest, lease_alive, read_leases
from .results import RESULTS_NAME, ResultsTable, SweepState

Echo = Callable[[str], None]


@dataclass
class SweepPlan:
    """A sweep's splits and cells, and the state of its results folder when it was made."""

    config: SweepConfig
    pools: dict[int, SplitManifest]
    data: FaceDataModule
    image_keys: list[str]
    cells: list[Cell]
    finished: set[CellKey] = field(default_factory=set)

    @property
    def output_dir(self) -> Path:
        return self.config.output_dir

    @property
    def table(self) -> ResultsTable:
        return ResultsTable(self.output_dir / RESULTS_NAME)

    @property
    def pending(self) -> list[Cell]:
        return [c for c in self.cells if c.key not in self.finished]

    @cached_property
    def splits(self) -> dict[str, str]:
        """Each seed's split digest (``sweep.json`` records them)."""
        return {str(seed): split_digest(pool) for seed, pool in self.pools.items()}

    @cached_property
    def fingerprints(self) -> dict[str, Any]:
        """Each method's settings (``sweep.json`` records them)."""
        return {m.name: m.fingerprint(self.config.data) for m in self.config.methods}

    @cached_property
    def digests(self) -> dict[str, str]:
        """Each method's settings as a short hash (stored in its cells' leases)."""
        return {name: fingerprint_digest(fp) for name, fp in self.fingerprints.items()}

    def running(self) -> set[CellKey]:
        """Cells of this grid that workers hold live leases on."""
        keys = {c.key for c in self.cells}
        return {lease.cell for lease in read_leases(self.output_dir) if lease.cell in keys and lease_alive(self.output_dir, lease)}

    def state_extra(self) -> dict[str, Any]:
        """What ``sweep.json`` records besides splits and settings: name, method order, config, grid."""
        config = self.config
        order = config.method_order or [m.name for m in config.methods]
        grid = [{"method": c.method.name, "train_samples": c.train_samples, "seed": c.seed, "label": c.label} for c in self.cells]
        return {"name": config.name, "method_order": order, "config": config.to_dict(), "grid": grid}

    def check_state(self, write: bool = True) -> None:
        """Refuse a changed split or changed method settings for cells with rows or running in
        another worker; record this sweep's (``write``) or only check against the recorded."""
        recorded = self.finished | self.running()
        SweepState(self.output_dir).check_and_update(self.splits, self.fingerprints, recorded, self.state_extra(), write=write)

    def context(self) -> SweepContext:
        """What the cells share, with the feature store of the config's cache folder."""
        data = self.data
        store = FeatureStore(
            self.config.feature_cache_dir,
            data.source,
            self.image_keys,
            face_crop=data.face_crop,
            batch_size=max(64, data.eval_batch_size),
            num_workers=data.num_workers,
            source_for=data.source_for,
        )
        return SweepContext(self.config, self.pools, store, self.output_dir / "logs")


def prepare(config: SweepConfig, echo: Echo, quiet: bool = True) -> SweepPlan:
    """Build each seed's split (bad data fails here) and the grid; read which cells are finished."""
    with quiet_lightning(quiet):
        pools, data, image_keys = build_splits(config, echo)
    cells, notes = build_cells(config, pools)
    for note in notes:
        echo(f"notice: {note}")
    smallest = min(c.train_samples for c in cells)
    for method in config.methods:
        need = get_strategy(method.strategy).min_train_samples
        if smallest < need:
            raise ConfigError(f"train_samples: {method.strategy} needs at least {need} training images, got {smallest}")
    plan = SweepPlan(config, pools, data, image_keys, cells)
    plan.finished = plan.table.finished_keys()
    return plan


__all__ = ["SweepPlan", "prepare"]
