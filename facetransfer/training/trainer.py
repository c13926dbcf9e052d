"""A Lightning ``Trainer`` with facetransfer's defaults, for use from Python.

The CLI applies the same defaults: best and last checkpoints, written atomically with a content digest
(:class:`AtomicCheckpointIO`), per-step seeding, bf16 and cuDNN autotuning on GPUs. Anything can be overridden::

    >>> trainer = make_trainer(max_epochs=20, accelerator="cpu")  # doctest: +SKIP
    >>> type(trainer.strategy.checkpoint_io).__name__  # doctest: +SKIP
    'AtomicCheckpointIO'
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from fsspec.implementations.local import LocalFileSystem
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveInt, restricted_number_type
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.plugins.io import CheckpointIO

from ..config_errors import check_ranges
from ..io.checkpoint import checked, load_errors, read_checkpoint, with_digest, write_checkpoint
from .callbacks import RunCheckpoint, StepSeeder
from .noise import silence_known_noise
from .test_faces import TestFaces


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO through :mod:`facetransfer.io.checkpoint`: a local checkpoint is written next to
    its destination, synced and renamed over it (Lightning's own moves a file from ``$TMPDIR``, a copy across
    filesystems that a kill leaves truncated), carries a content digest and loads safely (``weights_only=True``,
    digest checked). A full or read-only disk is one :class:`~facetransfer.errors.FileSystemError`, the previous
    file kept. See docs/reliability.md."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            # object stores: Lightning's way (which refuses storage_options, as this class does)
            return super().save_checkpoint(with_digest(checkpoint), path, storage_options)
        write_checkpoint(checkpoint, path, kept=_what_a_failed_save_keeps(Path(path)))

    def load_checkpoint(
        self, path: _PATH, map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if isinstance(get_filesystem(path), LocalFileSystem):
            return read_checkpoint(path)
        with load_errors(path):  # a missing file is Lightning's FileNotFoundError, worded by load_errors
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only is not False)
        return checked(checkpoint, path)


def _what_a_failed_save_keeps(path: Path) -> str:
    """``the previous last.ckpt is kept``, or the other checkpoints next to it, for the error of a failed save."""
    if path.exists():
        return f"the previous {path.name} is kept"
    others = sorted(p.name for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
    if others:
        return f"the partial file was removed; the run's other checkpoints are kept: {', '.join(others[:3])}" + (
            " ..." if len(others) > 3 else "")
    return "the partial file was removed; no checkpoint of this run was saved before"


def find_last_checkpoint(trainer: Any) -> Path | None:
    """The newest ``last*.ckpt`` of earlier runs in this trainer's folders, or None.

    Lightning's ``ckpt_path="last"`` only looks in the *new* run's checkpoint folder, which is empty when a logger
    versions its folders (``lightning_logs/version_N``), so a resumed run would silently start over. This looks in every
    version folder of the trainer's loggers, in ``default_root_dir/checkpoints``, in each ModelCheckpoint's ``dirpath``,
    and takes SLURM's requeue checkpoints (``default_root_dir/hpc_ckpt_N.ckpt``) into account.
    """
    folders = [Path(trainer.default_root_dir) / "checkpoints"]
    for logger in trainer.loggers:
        root = getattr(logger, "root_dir", None)
        if root:
            folders += [p / "checkpoints" for p in Path(root).glob("*") if p.is_dir()]
    folders += [Path(c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
    found = [f for folder in dict.fromkeys(folders) if folder.is_dir() for f in folder.glob("last*.ckpt")]
    found += [f for f in Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt") if f.is_file()]
    return max(found, key=lambda f: f.stat().st_mtime_ns) if found else None


def default_callbacks(checkpointing: bool = True, logger: bool = True, save_last: bool = True,
                      faces: bool = True) -> list[Callback]:
    """Best (by val/acc) and last checkpoints, learning rate in TensorBoard, per-step seeding
    (so a resumed run matches an uninterrupted one, see docs/reliability.md), and at ``test`` the confusion
    figure, misclassified faces and embedding projector (:class:`~facetransfer.training.test_faces.TestFaces`).

    ``checkpointing`` / ``logger``: False when the Trainer has checkpointing / logging turned off;
    ``save_last``: also keep ``last.ckpt``, the latest state after every epoch (for ``--ckpt_path last``);
    ``faces``: False leaves out the test's faces in TensorBoard.
    """
    callbacks: list[Callback] = [StepSeeder()]
    if checkpointing:
        callbacks.append(RunCheckpoint("best"))  # by the model's selection_metric (val/acc, open-set val/verify_acc)
        if save_last:  # the latest epoch, whether or not val/acc improved
            callbacks.append(RunCheckpoint("last"))
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        if faces:
            callbacks.append(TestFaces())
    return callbacks


def default_precision(accelerator: str | None = "auto") -> str | None:
    """``bf16-mixed`` when training will run on a CUDA GPU that supports it, else Lightning's default."""
    if str(accelerator) in ("auto", "gpu", "cuda", "None") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return None


#: the Trainer's numeric options' allowed values, checked while the command line is parsed (Lightning checks them
#: only when the run starts, with a traceback)
_COUNT_OR_MINUS_ONE = restricted_number_type("CountOrMinusOne", int, (">=", -1))  # -1: no limit / all
TRAINER_RANGES = {
    "max_epochs": _COUNT_OR_MINUS_ONE, "min_epochs": NonNegativeInt, "max_steps": _COUNT_OR_MINUS_ONE,
    "min_steps": NonNegativeInt, "num_sanity_val_steps": _COUNT_OR_MINUS_ONE,
    "check_val_every_n_epoch": PositiveInt, "accumulate_grad_batches": PositiveInt, "log_every_n_steps": PositiveInt,
    "num_nodes": PositiveInt, "gradient_clip_val": NonNegativeFloat, "limit_train_batches": NonNegativeFloat,
    "limit_val_batches": NonNegativeFloat, "limit_test_batches": NonNegativeFloat, "limit_predict_batches": NonNegativeFloat,
}


def with_trainer_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """Trainer options, checked against :data:`TRAINER_RANGES`, with bf16-mixed precision and cuDNN autotuning on
    GPUs unless they are set (the CLI and :func:`make_trainer` both apply them)."""
    check_ranges(options, TRAINER_RANGES)
    gpu_precision = default_precision(options.get("accelerator", "auto"))
    if options.get("precision") is None:
        options["precision"] = gpu_precision
    if options.get("benchmark") is None and not options.get("deterministic"):  # face crops have one fixed size
        options["benchmark"] = True if gpu_precision is not None else None
    return options


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """Trainer ``plugins`` plus :class:`AtomicCheckpointIO`, unless they hold a checkpoint IO already."""
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else ([] if plugins is None else [plugins])
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def make_trainer(save_last: bool = True, faces: bool = True, **kwargs: Any) -> L.Trainer:
    """``lightning.Trainer(**kwargs)`` plus :func:`default_callbacks` (appended to any given),
    atomic checkpoints, and on GPUs bf16-mixed precision and cuDNN autotuning by default.

    ``save_last=False`` keeps only the best checkpoint (runs that are never resumed); ``faces=False`` leaves the
    test's faces out of TensorBoard."""
    silence_known_noise()
    kwargs = with_trainer_defaults({"default_root_dir": "runs", **kwargs})
    logs = kwargs.get("logger") is not False
    defaults = default_callbacks(kwargs.get("enable_checkpointing") is not False, logs, save_last, faces)
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), *defaults]
    kwargs["plugins"] = with_atomic_checkpoints(kwargs.get("plugins"))  # atomic, weights_only checkpoint files
    return L.Trainer(**kwargs)


__all__ = ["AtomicCheckpointIO", "TRAINER_RANGES", "default_callbacks", "default_precision",
           "find_last_checkpoint", "make_trainer", "with_atomic_checkpoints", "with_trainer_defaults"]
