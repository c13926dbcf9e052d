"""Leases: which worker runs which cell, so that many processes share one grid and one folder.

A worker claims a cell by writing its lease, ``<output_dir>/leases/<cell>.json``, under the folder's
lock (:func:`~facetransfer.sweep.results.folder_lock`), and deletes it once the cell's row is in
``results.csv``. A lease dies with its worker: the worker's own file lock
(``leases/workers/<holder>.lock``) is released by the operating system when its process ends, and a
worker whose :class:`Heartbeat` is older than ``lease_seconds`` counts as dead too; its cell then runs
again from its start (docs/scaling.md tells when and where)::

    >>> book = LeaseBook("results/demo", WorkerIdentity.here("worker 0/2"), lease_seconds=300)  # doctest: +SKIP
    >>> with book.alive():  # doctest: +SKIP
    ...     claim = book.claim(("scratch/scratch_cnn", 16, 0), "scratch/scratch_cnn N=16 seed=0", "3f2a...")
    ...     claim.lease is None  # another live worker holds it
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ...io.atomic import atomic_write
from ...strategies.base import CellKey
from ...strategies.sections import slug
from ..results import LEASES_DIR, locked

WORKERS_DIR = "workers"
DEFAULT_LEASE_SECONDS = 300.0


def fingerprint_digest(fingerprint: Any) -> str:
    """A short stable hash of a method's settings (:meth:`MethodSpec.fingerprint`).

    >>> fingerprint_digest({"backbone": "resnet18", "lr": 0.1}) == fingerprint_digest({"lr": 0.1, "backbone": "resnet18"})
    True
    """
    text = json.dumps(fingerprint, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WorkerIdentity:
    """Who holds a lease: a unique id, a label for people (``shard 1/4``), host and process id."""

    holder: str
    label: str
    host: str
    pid: int

    @classmethod
    def here(cls, label: str = "worker") -> WorkerIdentity:
        """This process, with a new random id."""
        return cls(uuid.uuid4().hex[:12], label, socket.gethostname(), os.getpid())


@dataclass(frozen=True)
class Lease:
    """One cell's claim: the cell, its method's settings digest, the holder, its times (epoch seconds)."""

    cell: CellKey
    label: str
    fingerprint: str
    holder: str
    worker: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    lease_seconds: float
    attempt: int = 1  # 2 and more: taken over from a worker that stopped

    def age(self, now: float | None = None) -> float:
        """Seconds since the last heartbeat."""
        return (time.time() if now is None else now) - self.heartbeat_at

    @property
    def where(self) -> str:
        """``worker 1/4 on node7 (pid 4242)``."""
        return f"{self.worker} on {self.host} (pid {self.pid})"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "cell": list(self.cell)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Lease:
        data = json.loads(text)
        method, size, seed = data.pop("cell")
        return cls(cell=(str(method), int(size), int(seed)), **data)


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`LeaseBook.claim`: the new lease (None: another live worker holds the
    cell), and the lease of a dead worker it replaced, with why that worker counts as dead."""

    lease: Lease | None
    replaced: Lease | None = None
    reason: str = ""


def _liveness_path(folder: Path, holder: str) -> Path:
    return folder / LEASES_DIR / WORKERS_DIR / f"{holder}.lock"


def holder_alive(folder: str | os.PathLike, holder: str) -> bool:
    """Whether the worker ``holder`` still runs: its liveness lock is held (False once its
    process ended; True also where the filesystem cannot tell, leaving it to the heartbeat)."""
    path = _liveness_path(Path(folder), holder)
    if not path.exists():
        return False
    probe = FileLock(path)
    try:
        probe.acquire(timeout=0)
    except (Timeout, OSError):  # held; or it cannot be locked here (read-only folder ...): the heartbeat decides
        return True
    try:
        path.unlink(missing_ok=True)  # a dead worker's lock file
    finally:
        probe.release()
    return False


class LeaseBook:
    """The leases of one results folder, seen by one worker.

    Args:
        folder: the sweep's output_dir (leases go to ``folder/leases``).
        identity: this worker.
        lease_seconds: how long this worker's leases live without a heartbeat.
    """

    def __init__(self, folder: str | os.PathLike, identity: WorkerIdentity, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.folder = Path(folder)
        self.dir = self.folder / LEASES_DIR
        self.identity = identity
        self.lease_seconds = float(lease_seconds)

    @contextlib.contextmanager
    def alive(self) -> Iterator[None]:
        """Hold this worker's liveness lock while the block runs (claim cells inside it)."""
        path = _liveness_path(self.folder, self.identity.holder)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        lock.acquire()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            lock.release()

    def path(self, key: CellKey) -> Path:
        """The cell's lease file: a readable name, unique even when two method names slug alike."""
        method, size, seed = key
        digest = hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:8]
        return self.dir / f"{slug(method)}-n{size}-seed{seed}-{digest}.json"

    def read(self, key: CellKey) -> Lease | None:
        return _read(self.path(key))

    def claim(self, key: CellKey, label: str, fingerprint: str) -> Claim:
        """Claim ``key`` unless another live worker holds it (see :class:`Claim`)."""
        with locked(self.folder):
            current = self.read(key)
            reason = ""
            if current is not None and current.holder != self.identity.holder:
                reason = why_dead(self.folder, current)
                if not reason:
                    return Claim(None)
            now = time.time()
            lease = Lease(
                cell=key, label=label, fingerprint=fingerprint, holder=self.identity.holder, worker=self.identity.label,
                host=self.identity.host, pid=self.identity.pid, started_at=now, heartbeat_at=now,
                lease_seconds=self.lease_seconds, attempt=(current.attempt + 1) if current is not None else 1,
            )
            self._write(lease)
            return Claim(lease, current if reason else None, reason)

    def renew(self, lease: Lease) -> bool:
        """Move the heartbeat to now; False when the lease is no longer this worker's (taken over)."""
        with locked(self.folder):
            if not self.holds(lease):
                return False
            self._write(replace(lease, heartbeat_at=time.time()))
            return True

    def holds(self, lease: Lease) -> bool:
        current = self.read(lease.cell)
        return current is not None and current.holder == lease.holder

    def release(self, lease: Lease) -> None:
        """Give the cell back (it is pending again), if the lease is still this worker's."""
        with locked(self.folder):
            if self.holds(lease):
                self.path(lease.cell).unlink(missing_ok=True)

    def _write(self, lease: Lease) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path(lease.cell)) as fh:
            fh.write(lease.to_json())


def _read(path: Path) -> Lease | None:
    try:
        return Lease.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError):  # none, or not a lease (a stray file): nobody holds the cell
        return None


def why_dead(folder: str | os.PathLike, lease: Lease, now: float | None = None) -> str:
    """Why ``lease``'s worker counts as dead: silent for longer than its lease, or its process ended ("" while
    it still runs its cell)."""
    if lease.age(now) > lease.lease_seconds:
        return f"it has been silent for {lease.age(now):.0f} s (lease {lease.lease_seconds:g} s)"
    return "" if holder_alive(folder, lease.holder) else "its process has ended"


def read_leases(folder: str | os.PathLike) -> list[Lease]:
    """The leases of a results folder (running cells, and those of dead workers), oldest first."""
    leases = [lease for path in sorted((Path(folder) / LEASES_DIR).glob("*.json")) if (lease := _read(path))]
    return sorted(leases, key=lambda lease: lease.started_at)


class Heartbeat:
    """Renews a lease every ``lease_seconds / 4`` from a daemon thread while its cell runs; a block that
    raises (or a kill signal that raises) gives the lease back.

    ``lost`` becomes True when the lease turned out to be another worker's (this worker was
    taken for dead and its cell taken over); the cell's row is then recorded by the new holder.

        >>> with Heartbeat(book, lease) as beat:  # doctest: +SKIP
        ...     row = run_cell(cell, plan)
    """

    def __init__(self, book: LeaseBook, lease: Lease) -> None:
        self.book = book
        self.lease = lease
        self.interval = max(0.05, lease.lease_seconds / 4)
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease heartbeat {lease.label}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.book.renew(self.lease):
                    self.lost = True
                    return
            except Exception:  # a filesystem hiccup: try again at the next beat; the lease lives on meanwhile
                continue

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, error: type[BaseException] | None, *_: Any) -> None:
        self.stop()
        if error is not None:
            self.book.release(self.lease)


__all__ = ["DEFAULT_LEASE_SECONDS", "LEASES_DIR", "Claim", "Heartbeat", "Lease", "LeaseBook", "WorkerIdentity",
           "fingerprint_digest", "holder_alive", "read_leases", "why_dead"]
