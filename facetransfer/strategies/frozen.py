"""Strategies that fit a solver on frozen features: seconds per cell, not epochs.

The sweep's feature store extracts the features of every image once; a cell selects its training and
test rows and a subclass's :meth:`FrozenFeatureStrategy.solve` turns them into class scores. On an open-set
split (test people never trained on) a solver of the training people's classes says nothing about the test
people: the cell verifies pairs of the test people with the frozen features instead, the frozen baseline of the
fine-tuned embeddings (the same pairs as a Lightning cell's test, which draws them from the same test images).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch

from .base import Cell, CellContext, CellResult, MethodSpec, Strategy
from .lightning import MODEL
from .sections import MANAGED_MODEL_KEYS, Section

BACKBONE_KEYS = ("backbone_args", "input_size", "verify_pairs")
BACKBONE = Section("model", "backbone options", MODEL.target, only=BACKBONE_KEYS, managed=MANAGED_MODEL_KEYS)


def classification_metrics(scores: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, float]:
    """Top-1, top-5 and macro-F1 of class scores ``(N, num_classes)`` (higher is better)."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    preds, y = torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(target, dtype=torch.long)
    return {
        "top1": multiclass_accuracy(preds, y, num_classes, average="micro").item(),
        "top5": multiclass_accuracy(preds, y, num_classes, top_k=min(5, num_classes), average="micro").item(),
        "macro_f1": multiclass_f1_score(preds, y, num_classes, average="macro").item(),
    }


class FrozenFeatureStrategy(Strategy):
    """Base of strategies that learn from cached frozen features with a solver (no Lightning fit)."""

    trains = "solver"
    freeze = "all"
    sections: ClassVar[tuple[Section, ...]] = (BACKBONE,)

    def solve(self, train: np.ndarray, labels: np.ndarray, test: np.ndarray, num_classes: int, method: MethodSpec,
              seed: int, ctx: CellContext) -> np.ndarray:
        """Class scores ``(len(test), num_classes)`` from training features and labels (float32 arrays)."""
        raise NotImplementedError

    def check(self, method: MethodSpec, config: Any) -> None:
        from ..training.module import FaceClassifier

        FaceClassifier(**method.classifier_args())  # unknown backbone options or missing weights fail now

    def run(self, cell: Cell, ctx: CellContext) -> CellResult:
        import lightning as L

        from ..features import BackboneFeatures
        from ..training.devices import device_label
        from ..training.module import FaceClassifier

        manifest = ctx.manifest(cell)
        L.seed_everything(cell.seed, workers=True, verbose=False)  # the backbone of a random-init baseline
        model = FaceClassifier(**cell.method.classifier_args())  # builds the backbone only; it is not trained
        model.to(ctx.feature_device)
        extractor = BackboneFeatures(model.backbone, identity=model.feature_identity(), autocast=ctx.feature_autocast)
        test = ctx.feature_store.select(extractor, manifest.test)
        done = {"device": device_label(ctx.feature_device), "model": model}
        if manifest.open_set:
            from ..verification.openset import labelled_pairs_metrics

            verified = labelled_pairs_metrics(test.features, test.labels, pairs=model.hparams.verify_pairs)
            return CellResult.from_logged(verified.scalars("test/verify_"), train_seconds=0.0, **done)
        train = ctx.feature_store.select(extractor, manifest.train)
        start = time.perf_counter()
        scores = self.solve(train.features.numpy(), train.labels.numpy(), test.features.numpy(), manifest.num_classes,
                            cell.method, cell.seed, ctx)
        train_seconds = time.perf_counter() - start
        metrics = classification_metrics(scores, test.labels.numpy(), manifest.num_classes)
        return CellResult(**metrics, train_seconds=train_seconds, **done)


__all__ = ["BACKBONE", "BACKBONE_KEYS", "FrozenFeatureStrategy", "classification_metrics"]
