"""``results.csv``: one row per finished cell, rewritten atomically, the key of resuming a sweep; and
``sweep.json``: what the rows were computed with, so that a rerun with another data split or other method
settings is refused instead of mixed in. The workers of a sweep change both under one file lock of the
folder (:func:`folder_lock`); docs/reliability.md tells how::

    >>> table = ResultsTable("results/demo/results.csv")  # doctest: +SKIP
    >>> table.finished_keys()  # doctest: +SKIP
    {('scratch/scratch_cnn', 50, 0), ...}
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..errors import ConfigError, DataError
from ..io.atomic import TEMPORARY_SUFFIX, atomic_write
from ..io.atomic import remove_stale_temporaries as _remove_stale
from ..strategies.base import CellKey

RESULTS_NAME = "results.csv"
STATE_NAME = "sweep.json"
LOCK_NAME = ".sweep.lock"
LEASES_DIR = "leases"  # which worker runs which cell (parallel.lease)
STATE_VERSION = 1

#: the ``verify:`` section's pairs file verified with a cell's model: accuracy, ROC AUC, TAR at ``verify.far``
PAIRS_COLUMNS = ("pairs_verify_acc", "pairs_verify_auc", "pairs_verify_tar")
#: test metrics (fractions); empty where a cell did not measure one: classification on an open-set split (people never
#: trained on), verification of the test people on a closed-set one, the pairs file without a ``verify:`` section
METRIC_FIELDS = ("test_top1", "test_top5", "test_macro_f1", "test_verify_acc", "test_verify_auc", "test_verify_tar",
                 *PAIRS_COLUMNS)
FIELDS = ["dataset", "method", "strategy", "backbone", "weights", "train_samples", "train_identities", "seed",
          "identities", "test_images", "pool_size", *METRIC_FIELDS, "train_seconds", "cell_seconds", "device",
          "finished_at"]
INT_FIELDS = ("train_samples", "seed", "identities", "test_images", "pool_size")
FLOAT_FIELDS = ("train_seconds", "cell_seconds")
LOCK_TIMEOUT_S = 600.0  # the lock is held for milliseconds; this long means a holder is stuck


def folder_lock(folder: str | os.PathLike) -> FileLock:
    """The lock of a results folder's bookkeeping (``results.csv``, ``sweep.json``, leases).

    One OS file lock (``flock``; released when its process dies, even by SIGKILL), re-entrant
    within a thread and shared by the whole process::

        >>> with folder_lock("results/demo"):  # doctest: +SKIP
        ...     rows = ResultsTable("results/demo/results.csv").rows()
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # one lock object per file and process (re-entrant): the same folder spelt two ways is one lock
    return FileLock(folder.resolve() / LOCK_NAME, timeout=LOCK_TIMEOUT_S, is_singleton=True)


@contextlib.contextmanager
def locked(folder: str | os.PathLike) -> Iterator[None]:
    """Hold :func:`folder_lock` (a stuck holder gives one clear error instead of a hang)."""
    lock = folder_lock(folder)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{lock.lock_file} has been locked for {LOCK_TIMEOUT_S:.0f} s: a facetransfer process holding it is stuck "
            "(stopped or on a hung filesystem); end it and run the command again"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _parse_row(row: dict[str, str], path: Path, line: int) -> dict[str, Any]:
    """Numbers parsed; a column older files lack, or an empty one, is None (an unmeasured metric, the size axis
    a cell did not use)."""
    out: dict[str, Any] = dict(row)
    try:
        for key in INT_FIELDS:
            out[key] = int(row[key])
        for key in FLOAT_FIELDS:
            out[key] = float(row[key])
        for key, kind in [("train_identities", int), *((key, float) for key in METRIC_FIELDS)]:
            out[key] = kind(row[key]) if row.get(key) not in (None, "") else None
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path} line {line}: not a facetransfer results row ({err})") from None
    return out


class ResultsTable:
    """The rows of a sweep's ``results.csv``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        """All rows, numbers parsed (an absent file has none)."""
        if not self.path.is_file():
            return []
        reader = csv.DictReader(io.StringIO(self.path.read_text()))
        missing = [f for f in ("method", "train_samples", "seed", "test_top1") if f not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{self.path} is not a facetransfer results file (no column {missing[0]!r})")
        return [_parse_row(row, self.path, i) for i, row in enumerate(reader, start=2)]

    def finished_keys(self) -> set[CellKey]:
        return {row_key(r) for r in self.rows()}

    def append(self, row: Mapping[str, Any]) -> bool:
        """Add a row unless its cell is already recorded; True when it was added.

        Read, change and rewrite happen under :func:`folder_lock`, so rows that several
        processes add at the same time are all kept.
        """
        with locked(self.path.parent):
            rows = self.rows()
            if row_key(row) in {row_key(r) for r in rows}:
                return False
            with atomic_write(self.path, newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
                writer.writeheader()
                writer.writerows({k: _format(r.get(k)) for k in FIELDS} for r in [*rows, row])
        return True


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def row_summary(row: Mapping[str, Any]) -> str:
    """A row's measured metrics in a few words: ``top-1 81.0%, top-5 95.2%, verification 88.1% (AUC 0.941)``."""
    def percent(key: str) -> str:
        return f"{row[key] * 100:.1f}%"

    parts = [f"top-1 {percent('test_top1')}, top-5 {percent('test_top5')}"] if row.get("test_top1") is not None else []
    for label, prefix in (("verification of the test people", "test_verify"), ("pairs file", "pairs_verify")):
        if row.get(f"{prefix}_acc") is not None:
            parts.append(f"{label} {percent(f'{prefix}_acc')} (AUC {row[f'{prefix}_auc']:.3f})")
    return ", ".join(parts)


def row_key(row: Mapping[str, Any]) -> CellKey:
    return (str(row["method"]), int(row["train_samples"]), int(row["seed"]))


# --- what the rows were computed with ------------------------------------------------------------
def _diff(old: Any, new: Any, prefix: str = "") -> str | None:
    """The first differing key as ``key: old -> new`` (None when equal; an absent section equals an empty one)."""
    if old in (None, {}) and new in (None, {}):
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _diff(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
            if found:
                return found
        return None
    return None if old == new else f"{prefix}: {old!r} -> {new!r}"


def read_state(folder: str | os.PathLike) -> dict[str, Any]:
    """``sweep.json`` of ``folder`` as far as it can be read ({} when absent or damaged), for what needs
    only the CSV to work (the report, ``--status``)."""
    try:
        state = json.loads((Path(folder) / STATE_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


class SweepState:
    """``sweep.json``: the split of each seed and each method's settings behind the rows."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / STATE_NAME

    def load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"version": STATE_VERSION, "splits": {}, "methods": {}}
        try:
            state = json.loads(self.path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{self.path} is damaged ({err}); move it away to start the sweep afresh") from None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise DataError(f"{self.path} is not a facetransfer sweep state (version {STATE_VERSION})")
        return state

    def check_and_update(self, splits: Mapping[str, str], methods: Mapping[str, Any], recorded: set[CellKey],
                         extra: Mapping[str, Any], write: bool = True) -> None:
        """Refuse to mix results: a seed's split or a method's settings must not change while it has rows.

        ``recorded``: the cells with rows, and those other workers are running (their settings
        are in this file: the first writer wins, later workers are checked against it).
        """
        with locked(self.path.parent):
            state = self.load()
            folder = self.path.parent
            seeds_with_rows, methods_with_rows = {str(s) for _, _, s in recorded}, {m for m, _, _ in recorded}
            for seed, digest in splits.items():
                old = state["splits"].get(seed)
                if old is not None and old != digest and seed in seeds_with_rows:
                    raise ConfigError(
                        f"{folder} holds results of another data split for seed {seed} (the dataset, its filtering or "
                        "val/test fractions changed); use another output_dir, or move the old results away"
                    )
            for name, fingerprint in methods.items():
                old = state["methods"].get(name)
                change = _diff(old, fingerprint) if old is not None and name in methods_with_rows else None
                if change:
                    raise ConfigError(
                        f"method {name!r} has results in {folder} made with other settings ({change}); "
                        "use another output_dir, or give the changed method another name:"
                    )
            if not write:
                return
            state["splits"].update(splits)
            state["methods"].update(methods)
            order = [*extra.get("method_order", []), *state.get("method_order", [])]
            state.update(extra)
            state["method_order"] = list(dict.fromkeys(order))  # the config's order, then methods only earlier runs had
            with atomic_write(self.path) as fh:
                fh.write(json.dumps(state, indent=1, sort_keys=True))

    def check_cell(self, method: str, fingerprint: Any, seed: int, split: str) -> None:
        """Refuse a cell whose method settings or split differ from those recorded (another
        worker of the folder runs another config). Call it holding :func:`folder_lock`."""
        state = self.load()
        folder = self.path.parent
        old_split = state["splits"].get(str(seed))
        if old_split is not None and old_split != split:
            raise ConfigError(
                f"{folder}: another worker recorded a different data split for seed {seed} in {self.path.name} "
                "(different data or data settings); every worker of a folder must use the same data"
            )
        old = state["methods"].get(method)
        change = _diff(old, fingerprint) if old is not None else None
        if change:
            raise ConfigError(
                f"{folder}: another worker recorded other settings for method {method!r} in {self.path.name} "
                f"({change}); every worker of a folder must run the same config"
            )


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Temporary files a killed sweep left behind (of ``results.csv``, ``sweep.json`` and the leases; the real files
    are intact). Their writers hold :func:`folder_lock`, so under it every temporary file is a leftover."""
    with locked(folder):
        for name in (RESULTS_NAME, STATE_NAME):
            _remove_stale(Path(folder) / name)
        for stale in (Path(folder) / LEASES_DIR).glob(f".*{TEMPORARY_SUFFIX}"):
            with contextlib.suppress(OSError):
                stale.unlink()


__all__ = ["FIELDS", "METRIC_FIELDS", "PAIRS_COLUMNS", "RESULTS_NAME", "ResultsTable", "SweepState", "folder_lock",
           "locked", "read_state", "row_key", "row_summary"]
