"""A command that fails before its first step leaves no run folder behind.

Lightning creates a run's folder (``runs/lightning_logs/version_N``) and writes ``config.yaml``, ``hparams.yaml``
and the split into it before the first training step; when the run then fails (bad data, a wrong option, a full
disk) the folder would stay, empty of results. :class:`RunFolderGuard` notes which of the run's folders exist
before the command and, when it fails before any step, removes the ones it created -- only if they hold no
checkpoint. A run that trained (or tested) at least one batch keeps everything::

    >>> guard, watcher = RunFolderGuard.before(trainer), StepWatcher()  # doctest: +SKIP
    >>> try:
    ...     trainer.fit(model, data)  # a trainer built with callbacks=[watcher]
    ... except Exception:
    ...     guard.clean_up_after_failure(trainer, watcher.stepped)
    ...     raise
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback


class StepWatcher(Callback):
    """Notes whether the command's own loop (training, testing, validating, predicting) finished a batch."""

    def __init__(self) -> None:
        self.stepped = False

    def _stepped(self, *args: Any) -> None:
        self.stepped = True

    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _stepped

    def on_validation_batch_end(self, trainer, *args: Any) -> None:
        if trainer.state.fn == "validate":  # validation inside fit (sanity check included) is not a step of fit
            self.stepped = True


def _missing_chain(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    chain = []
    while not folder.exists() and folder != folder.parent:
        chain.append(folder)
        folder = folder.parent
    return chain


@dataclass
class RunFolderGuard:
    """Which of a run's log folders existed before the command (see the module docstring)."""

    roots: dict[Path, set[str]] = field(default_factory=dict)  # logger root -> names in it before the run
    created: list[Path] = field(default_factory=list)  # roots and their parents that did not exist, deepest first

    @classmethod
    def before(cls, trainer: Any) -> RunFolderGuard:
        guard = cls()
        for root in [Path(logger.root_dir) for logger in trainer.loggers if getattr(logger, "root_dir", None)]:
            guard.created += _missing_chain(root)
            guard.roots[root] = set(os.listdir(root)) if root.is_dir() else set()
        return guard

    def new_log_dirs(self, trainer: Any) -> list[Path]:
        """The loggers' version folders that this run created."""
        log_dirs = [Path(logger.log_dir) for logger in trainer.loggers if getattr(logger, "log_dir", None)]
        return [d for d in log_dirs if d.parent in self.roots and d.name not in self.roots[d.parent] and d.is_dir()]

    def clean_up_after_failure(self, trainer: Any, stepped: bool) -> list[Path]:
        """Remove the folders this run created when no step ran and they hold no checkpoint; returns them."""
        if stepped or not trainer.is_global_zero:
            return []
        removed = [folder for folder in self.new_log_dirs(trainer) if not any(folder.rglob("*.ckpt"))]
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        for folder in self.created:  # deepest first; only when empty
            with contextlib.suppress(OSError):
                folder.rmdir()
                removed.append(folder)
        return removed


__all__ = ["RunFolderGuard", "StepWatcher"]
