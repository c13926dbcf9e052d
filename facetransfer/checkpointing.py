"""Checkpoint files that survive being killed, load safely, and are found again for ``--ckpt_path last``.

Lightning's :class:`~lightning.fabric.plugins.io.TorchCheckpointIO` writes a checkpoint
to a temporary file made by :func:`tempfile.mkstemp` (in ``$TMPDIR``) and moves it into
place. When ``$TMPDIR`` and the run folder are on different filesystems (local ``/tmp``
and a network or scratch disk, the usual cluster layout) that move is a copy into the
final name, and a kill during the copy leaves a truncated ``last.ckpt``.
:class:`AtomicCheckpointIO` writes the temporary file next to its destination, syncs it
and renames it over the old one, so the previous checkpoint stays whole until the new
one is complete. It also loads with ``weights_only=True`` and reports an unsafe or
damaged file as one :class:`~facetransfer.errors.WeightsError`::

    >>> trainer = make_trainer()  # doctest: +SKIP
    >>> type(trainer.strategy.checkpoint_io).__name__  # doctest: +SKIP
    'AtomicCheckpointIO'
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH

from .atomic import atomic_write
from .errors import WeightsError


def checkpoint_error(path: _PATH, err: BaseException) -> WeightsError:
    """The :class:`WeightsError` for a checkpoint that ``torch.load(weights_only=True)`` refused."""
    text = str(err)
    if isinstance(err, FileNotFoundError):
        return WeightsError(f"checkpoint file {path} does not exist")
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return WeightsError(
            f"checkpoint {path} holds a pickled Python object{what}, not only tensors and plain data; "
            "facetransfer loads checkpoints with weights_only=True and refuses it (only load files you trust "
            "with torch.load(weights_only=False), then save their state_dict)"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return WeightsError(f"checkpoint {path} is damaged or not a PyTorch checkpoint: {first}")


LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError)


def is_load_error(err: BaseException) -> bool:
    """True for what ``torch.load`` raises on an unsafe, truncated or foreign file (not e.g. a shape mismatch)."""
    if isinstance(err, RuntimeError):
        return any(s in str(err) for s in ("PytorchStreamReader", "zip archive", "Weights only load failed"))
    return isinstance(err, LOAD_ERRORS)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that replaces a local checkpoint atomically and loads it safely."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)  # object stores: Lightning's way
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if not get_filesystem(path).exists(path):
            raise WeightsError(f"checkpoint file {path} does not exist")
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only is not False)
        except LOAD_ERRORS as err:
            if not is_load_error(err):
                raise
            raise checkpoint_error(path, err) from None


def read_checkpoint(path: _PATH) -> dict[str, Any]:
    """A checkpoint file as a dict, loaded safely (``weights_only=True``, on the CPU); a missing,
    unsafe or damaged file is one :class:`~facetransfer.errors.WeightsError`."""
    if not Path(path).is_file():
        raise WeightsError(f"checkpoint file {path} does not exist")
    if not zipfile.is_zipfile(path):  # what torch.save writes (else torch reports a text file as "pickled")
        raise WeightsError(f"checkpoint {path} is damaged or not a PyTorch checkpoint: not a zip archive")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        if not is_load_error(err):
            raise
        raise checkpoint_error(path, err) from None
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"checkpoint {path} is not a Lightning checkpoint (a {type(checkpoint).__name__})")
    return checkpoint


def atomic_torch_save(obj: Any, path: _PATH) -> Path:
    """``torch.save`` to ``path`` through :func:`~facetransfer.atomic.atomic_write` (temporary file, fsync, rename)."""
    with atomic_write(path, "wb") as fh:
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
    "checkpoint_error",
    "find_last_checkpoint",
    "is_load_error",
    "read_checkpoint",
]
