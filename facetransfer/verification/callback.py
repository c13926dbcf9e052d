"""Pair verification at the end of ``test``, as a Lightning callback.

A face classifier's backbone is also a face embedder; this callback measures it on an LFW
pairs file each time the model is tested, next to the identification metrics::

    # YAML (facetransfer test / fit)
    trainer:
      callbacks:
        - class_path: facetransfer.verification.PairVerification
          init_args: {pairs: ../shared/data/lfw-devtrain/pairsDevTrain.txt, flip: true}

It logs ``verify/acc``, ``verify/acc_std``, ``verify/auc``, ``verify/tar@far...`` and the ROC
figure to the run's logger (see docs/verification.md).
"""

from __future__ import annotations

import lightning as L
from jsonargparse.typing import OpenUnitInterval
from lightning.pytorch.callbacks import Callback

from ..config_errors import FractionUpToOne, check_ranges
from ..data.lfw import LFWSource
from .evaluate import VerificationResult, evaluate_pairs, plot_roc
from ..data.pairs import PairsProtocol


class PairVerification(Callback):
    """Run the LFW pairs protocol with the tested model's backbone features (rank zero only).

    Args:
        pairs: a pairs file (``pairsDevTrain.txt``, ``pairsDevTest.txt``, ``pairs.txt`` ...).
        root: the LFW folder holding the images (default: the pairs file's folder).
        face_crop: central fraction of the 250 px image kept before resizing.
        flip: average each embedding with the mirrored image's.
        far: false accept rate of the TAR@FAR metric.
        batch_size / num_workers: of the embedding pass.

    >>> PairVerification("pairs.txt", face_crop=1.5)
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: PairVerification face_crop must be in (0, 1], got 1.5
    """

    def __init__(self, pairs: str, root: str | None = None, face_crop: float = LFWSource.face_crop, flip: bool = False,
                 far: float = 1e-3, batch_size: int = 64, num_workers: int = 0) -> None:
        check_ranges({"face_crop": face_crop, "far": far}, {"face_crop": FractionUpToOne, "far": OpenUnitInterval},
                     prefix="PairVerification ")
        self.pairs, self.root = pairs, root
        self.face_crop, self.flip, self.far = face_crop, flip, far
        self.batch_size, self.num_workers = batch_size, num_workers
        self.result: VerificationResult | None = None
        self._protocol: PairsProtocol | None = None

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._protocol = PairsProtocol.load(self.pairs, self.root)  # a bad pairs file fails before testing

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self._protocol is None:
            return
        result = self.result = evaluate_pairs(
            pl_module, self._protocol, face_crop=self.face_crop, flip=self.flip, far=self.far,
            batch_size=self.batch_size, num_workers=self.num_workers, device=pl_module.device,
        )
        pl_module.log_dict(result.scalars(), rank_zero_only=True)
        experiment = getattr(pl_module.logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            figure = plot_roc(result.metrics, result.summary().split(":")[0])
            experiment.add_figure("verify/roc", figure, trainer.global_step)


__all__ = ["PairVerification"]
