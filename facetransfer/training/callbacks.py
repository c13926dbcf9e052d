"""Callbacks that every facetransfer run gets (see :func:`facetransfer.default_callbacks`), and LP-FT's.

    >>> callbacks = [StepSeeder(), RunCheckpoint("best"), RunCheckpoint("last")]
    >>> trainer = lightning.Trainer(callbacks=callbacks)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..errors import ConfigError


class StepSeeder(Callback):
    """Seed torch, numpy and ``random`` before each training batch from ``(seed, batches trained, rank)``.

    So a run resumed from a mid-epoch checkpoint draws what the uninterrupted run drew (dropout, on-device
    augmentation), on every rank, with no RNG state to save (docs/reliability.md). Seeding happens when training
    starts and after each batch, i.e. before the next batch is moved to the device.

    Args:
        seed: base seed; ``None`` takes the run's ``seed_everything`` seed (``PL_GLOBAL_SEED``), or
            draws one. It is stored in checkpoints.

    >>> StepSeeder(seed=3).state_dict()
    {'seed': 3}
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.seed is None:
            env = os.environ.get("PL_GLOBAL_SEED")
            self.seed = int(env) if env is not None else random.SystemRandom().randrange(2**31)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reseed(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._reseed(trainer)

    def _reseed(self, trainer: L.Trainer) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.total.processed
        entropy = [int(self.seed or 0) & 0xFFFFFFFF, done, trainer.global_rank]
        state = np.random.SeedSequence(entropy).generate_state(2, np.uint64)
        torch.manual_seed(int(state[0]))
        np.random.seed(int(state[1] % 2**32))
        random.seed(int(state[1]))

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed") is not None:
            self.seed = int(state_dict["seed"])


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` in one of the two roles every run has.

    ``best``: the epoch with the best ``monitor`` (``best-epoch=N.ckpt``; default: the model's ``selection_metric``,
    ``val/acc``, or ``val/verify_acc`` for open-set runs). ``last``: the latest
    epoch, rewritten at every epoch end (``last.ckpt``; a checkpoint without a monitor keeps the
    newest). Lightning >= 2.6's ``save_last=True`` rewrites ``last.ckpt`` only when the monitored
    metric improves, so a resume from it could silently go back to the best epoch. Each role has
    its own ``state_key``, so configs may add plain ``ModelCheckpoint`` s of any kind beside them.

    >>> RunCheckpoint("last").state_key
    'facetransfer.last'
    """

    def __init__(self, role: Literal["best", "last"] = "best", monitor: str | None = None, mode: str = "max") -> None:
        if role == "best":
            super().__init__(monitor=monitor or "val/acc", mode=mode, filename="best-{epoch}")
            self._model_decides = monitor is None
        elif role == "last":
            super().__init__(filename="last", enable_version_counter=False)
        else:
            raise ValueError(f"RunCheckpoint role must be 'best' or 'last', got {role!r}")
        self.role = role

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if getattr(self, "_model_decides", False):
            self.monitor = getattr(pl_module, "selection_metric", self.monitor)
        super().setup(trainer, pl_module, stage)

    @property
    def state_key(self) -> str:
        return f"facetransfer.{self.role}"


class LinearProbeHead(Callback):
    """LP-FT: fit the new head on the frozen pretrained features before fine-tuning starts.

    A fresh random head sends large, random gradients into the pretrained layers in the first steps of
    fine-tuning and distorts the features they hold ("Fine-Tuning can Distort Pretrained Features and
    Underperform Out-of-Distribution", Kumar et al., ICLR 2022). With this callback the head starts at the
    linear probe's solution instead: at the start of ``fit`` the training images' features (eval transform, the
    backbone as loaded) are computed once through the model's feature provider (the data's, linked by the CLI
    and the sweep, so a sweep reuses its cached features), and :meth:`~facetransfer.FaceClassifier.fit_head`
    solves the probe's problem (full-batch L-BFGS, L2 ``head_c``). A resumed fit skips this (the checkpoint
    holds the fitted head), so a resume gives the same weights as an uninterrupted run.

    Args:
        head_c: inverse L2 strength of the head, as scikit-learn's ``C``.
        iterations: L-BFGS iterations.

    >>> LinearProbeHead(head_c=0.5).state_dict()
    {'done': False}
    """

    def __init__(self, head_c: float = 1.0, iterations: int = 200) -> None:
        if head_c <= 0 or iterations < 1:
            raise ConfigError(f"LinearProbeHead needs head_c > 0 and iterations >= 1, got {head_c}, {iterations}")
        self.head_c, self.iterations = head_c, iterations
        self.done = False
        self.loss: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.done or trainer.ckpt_path:  # resumed: the checkpoint holds the fitted head
            return
        if getattr(pl_module, "features", None) is None:
            raise ConfigError("LinearProbeHead reads the training images' features through the model's feature "
                              "provider: build the model with the data's (FaceClassifier(features=data.features); "
                              "the CLI and the sweep link it)")
        train = pl_module.features.split_features("train", pl_module.frozen_features())
        self.loss = pl_module.fit_head(train.features, train.labels, self.head_c, self.iterations)
        self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = bool(state_dict.get("done", False))


__all__ = ["LinearProbeHead", "RunCheckpoint", "StepSeeder"]
