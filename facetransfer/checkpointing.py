"""Checkpoint files that survive being killed, load safely, and are found again for ``--ckpt_path last``.

Lightning's :class:`~lightning.fabric.plugins.io.TorchCheckpointIO` writes a checkpoint
to a temporary file made by :func:`tempfile.mkstemp` (in ``$TMPDIR``) and moves it into
place. When ``$TMPDIR`` and the run folder are on different filesystems (local ``/tmp``
and a network or scratch disk, the usual cluster layout) that move is a copy into the
final name, and a kill during the copy leaves a truncated ``last.ckpt``.
:class:`AtomicCheckpointIO` writes the temporary file next to its destination, syncs it
and renames it over the old one, so the previous checkpoint stays whole until the new
one is complete. Each checkpoint carries a digest of its content
(:mod:`facetransfer.checkpoint_digest`), checked when it is loaded, so flipped bits are refused
rather than tested or trained on. It loads with ``weights_only=True`` and reports an unsafe or
damaged file as one :class:`~facetransfer.errors.WeightsError`, a full or read-only disk during a
save as one :class:`~facetransfer.errors.FileSystemError` (the previous checkpoint stays)::

    >>> trainer = make_trainer()  # doctest: +SKIP
    >>> type(trainer.strategy.checkpoint_io).__name__  # doctest: +SKIP
    'AtomicCheckpointIO'
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH

from .atomic import atomic_write
from .checkpoint_digest import DIGEST_KEY, verify_digest, with_digest
from .checkpoint_info import LOAD_ERRORS, checkpoint_error, is_load_error
from .errors import WeightsError


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that replaces a local checkpoint atomically, with a content digest, and
    loads it safely, checking the digest."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        signed = with_digest(checkpoint)
        if not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(signed, path, storage_options)  # object stores: Lightning's way
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        atomic_torch_save(signed, path, what="checkpoint", kept=_what_a_failed_save_keeps(Path(path)))

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if not get_filesystem(path).exists(path):
            raise WeightsError(f"checkpoint file {path} does not exist")
        try:
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only is not False)
        except LOAD_ERRORS as err:
            if not is_load_error(err):
                raise
            raise checkpoint_error(path, err) from None
        verify_digest(checkpoint, path)
        checkpoint.pop(DIGEST_KEY, None)  # checked: the model's on_load_checkpoint need not hash it again
        return checkpoint


def _what_a_failed_save_keeps(path: Path) -> str:
    """``the previous last.ckpt is kept``, or the other checkpoints next to it, for the error of a failed save."""
    if path.exists():
        return f"the previous {path.name} is kept"
    others = sorted(p.name for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
    if others:
        return f"the partial file was removed; the run's other checkpoints are kept: {', '.join(others[:3])}" + (
            " ..." if len(others) > 3 else "")
    return "the partial file was removed; no checkpoint of this run was saved before"


def atomic_torch_save(obj: Any, path: _PATH, what: str = "file", kept: str | None = None) -> Path:
    """``torch.save`` to ``path`` through :func:`~facetransfer.atomic.atomic_write` (temporary file, fsync, rename);
    ``what`` and ``kept`` word the one-line error of a full or read-only disk."""
    with atomic_write(path, "wb", what=what, kept=kept) as fh:
        torch.save(obj, fh)
    return Path(path)


def find_last_checkpoint(trainer: Any) -> Path | None:
    """The newest ``last*.ckpt`` of earlier runs in this trainer's folders, or None.

    Lightning's ``ckpt_path="last"`` only looks in the *new* run's checkpoint folder, which
    is empty when a logger versions its folders (``lightning_logs/version_N``), so a resumed
    run would silently start over. This looks in every version folder of the trainer's
    loggers, in ``default_root_dir/checkpoints``, in each ModelCheckpoint's ``dirpath``, and
    takes SLURM's requeue checkpoints (``default_root_dir/hpc_ckpt_N.ckpt``) into account.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    folders = [Path(trainer.default_root_dir) / "checkpoints"]
    for logger in trainer.loggers:
        root = getattr(logger, "root_dir", None)
        if root:
            folders += [p / "checkpoints" for p in Path(root).glob("*") if p.is_dir()]
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            folders.append(Path(callback.dirpath))
    found = [
        f
        for folder in dict.fromkeys(folders)
        if folder.is_dir()
        for f in folder.glob("last*.ckpt")
        if f.is_file()
    ]
    found += [f for f in Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt") if f.is_file()]
    return max(found, key=lambda f: f.stat().st_mtime_ns) if found else None


__all__ = [
    "AtomicCheckpointIO",
    "atomic_torch_save",
    "find_last_checkpoint",
]
