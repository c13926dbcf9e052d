"""A Lightning ``Trainer`` with facetransfer's defaults, for use from Python.

The CLI applies the same defaults. Anything can be overridden::

    >>> trainer = make_trainer(max_epochs=20, accelerator="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.plugins.io import CheckpointIO

from .callbacks import RunCheckpoint, StepSeeder
from .checkpointing import AtomicCheckpointIO


def default_callbacks(checkpointing: bool = True, logger: bool = True, save_last: bool = True) -> list[Callback]:
    """Best (by val/acc) and last checkpoints, learning rate in TensorBoard, per-step seeding
    (so a resumed run matches an uninterrupted one, see docs/reliability.md).

    ``checkpointing`` / ``logger``: False when the Trainer has checkpointing / logging turned off;
    ``save_last``: also keep ``last.ckpt``, the latest state after every epoch (for ``--ckpt_path last``).
    """
    callbacks: list[Callback] = [StepSeeder()]
    if checkpointing:
        callbacks.append(RunCheckpoint("best", monitor="val/acc", mode="max"))
        if save_last:  # the latest epoch, whether or not val/acc improved
            callbacks.append(RunCheckpoint("last"))
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    return callbacks


def default_precision(accelerator: str | None = "auto") -> str | None:
    """``bf16-mixed`` when training will run on a CUDA GPU that supports it, else Lightning's default."""
    if str(accelerator) in ("auto", "gpu", "cuda", "None") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return None


def default_benchmark(accelerator: str | None = "auto") -> bool | None:
    """cuDNN autotuning on CUDA (face crops have one fixed size), else Lightning's default."""
    return True if default_precision(accelerator) is not None else None


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """Trainer ``plugins`` plus :class:`AtomicCheckpointIO`, unless they hold a checkpoint IO already."""
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else ([] if plugins is None else [plugins])
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def make_trainer(save_last: bool = True, **kwargs: Any) -> L.Trainer:
    """``lightning.Trainer(**kwargs)`` plus :func:`default_callbacks` (appended to any given),
    atomic checkpoints, and on GPUs bf16-mixed precision and cuDNN autotuning by default.

    ``save_last=False`` keeps only the best checkpoint (runs that are never resumed)."""
    from ._noise import silence_known_noise

    silence_known_noise()
    kwargs.setdefault("default_root_dir", "runs")
    if kwargs.get("precision") is None:
        kwargs["precision"] = default_precision(kwargs.get("accelerator", "auto"))
    if kwargs.get("benchmark") is None and not kwargs.get("deterministic"):
        kwargs["benchmark"] = default_benchmark(kwargs.get("accelerator", "auto"))
    defaults = default_callbacks(kwargs.get("enable_checkpointing") is not False, kwargs.get("logger") is not False, save_last)
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), *defaults]
    kwargs["plugins"] = with_atomic_checkpoints(kwargs.get("plugins"))  # atomic, weights_only checkpoint files
    return L.Trainer(**kwargs)
