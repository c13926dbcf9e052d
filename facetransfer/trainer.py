"""A Lightning ``Trainer`` with facetransfer's defaults, for use from Python.

The CLI applies the same defaults. Anything can be overridden::

    >>> trainer = make_trainer(max_epochs=20, accelerator="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint


def default_callbacks() -> list[Callback]:
    """Best (by val/acc) and last checkpoints, learning rate in TensorBoard."""
    return [
        ModelCheckpoint(monitor="val/acc", mode="max", save_last=True, filename="best-{epoch}"),
        LearningRateMonitor(logging_interval="epoch"),
    ]


def make_trainer(**kwargs: Any) -> L.Trainer:
    """``lightning.Trainer(**kwargs)`` plus :func:`default_callbacks` (appended to any given)."""
    from ._noise import silence_known_noise

    silence_known_noise()
    kwargs.setdefault("default_root_dir", "runs")
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), *default_callbacks()]
    return L.Trainer(**kwargs)
