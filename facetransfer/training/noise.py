"""Silencing messages that are expected in facetransfer runs and only confuse users."""

from __future__ import annotations

import logging
import warnings

_WARNINGS = [
    r"Found \d+ module\(s\) in eval mode",  # frozen BatchNorm stays in eval mode on purpose
    r".*isinstance\(treespec, LeafSpec\)",
    r"The dirpath has changed from",  # testing a checkpoint from another run's folder
    r".*does not have many workers",  # small CPU machines; num_workers is chosen deliberately
    r"The number of training batches .* is smaller than the logging interval",
    # the model turns store batches into network input; the DataModule defines no such hook
    r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`",
]


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def silence_known_noise() -> None:
    """Hide known-harmless Lightning warnings and advertising tips (idempotent)."""
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
