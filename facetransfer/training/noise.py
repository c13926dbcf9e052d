"""Silencing messages that are expected in facetransfer runs and only confuse users."""

from __future__ import annotations

import logging
import threading
import warnings

from ..io.filesystem import raised_in

_WARNINGS = [
    r"Found \d+ module\(s\) in eval mode",  # frozen BatchNorm stays in eval mode on purpose
    r".*isinstance\(treespec, LeafSpec\)",
    r"The dirpath has changed from",  # testing a checkpoint from another run's folder
    r".*does not have many workers",  # small CPU machines; num_workers is chosen deliberately
    r"The number of training batches .* is smaller than the logging interval",
    # the model turns store batches into network input; the DataModule defines no such hook
    r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`",
    # every run has a best and a last checkpoint: "best" takes the first, the best-by-val/acc one (default_callbacks)
    r'`\.\w+\(ckpt_path="best"\)` is called with Trainer configured with multiple `ModelCheckpoint`',
]


#: Lightning's start-up lines, which would stand above a one-line error; shown with FACETRANSFER_LOGLEVEL=INFO
_BANNER = ("Seed set to", "GPU available:", "TPU available:", "HPU available:", "Restoring states from",
           "Loaded model weights from")


class _QuietStart(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "litlogger" in message:  # advertising tips
            return False
        return not message.startswith(_BANNER) or logging.getLogger("facetransfer").isEnabledFor(logging.INFO)


def _quiet_log_writer_thread(args: threading.ExceptHookArgs, default=threading.excepthook) -> None:
    """TensorBoard's writer thread prints a traceback when the disk is full; the next write re-raises the error in
    the run, which reports it as one line naming the log folder."""
    if not (isinstance(args.exc_value, OSError) and raised_in(args.exc_value, "tensorboard")):
        default(args)


def silence_known_noise() -> None:
    """Hide known-harmless Lightning warnings, advertising tips, the start-up banner and the traceback of a log
    writer thread (idempotent)."""
    threading.excepthook = _quiet_log_writer_thread
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch", "lightning.fabric.utilities.rank_zero",
                 "lightning.fabric.utilities.seed"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietStart) for f in logger.filters):
            logger.addFilter(_QuietStart())
