"""Strategies trained by Lightning: one :class:`~facetransfer.FaceClassifier` fit per cell.

The same class, DataModule and :func:`~facetransfer.make_trainer` as ``facetransfer fit``; a
strategy only sets the freeze policy and its recipe. The test metrics come from the checkpoint of the best
epoch by the model's selection metric: ``val/acc``, or ``val/verify_acc`` on an open-set split (people of
validation and test never trained on), whose test then verifies pairs of the test people.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from .base import Cell, CellContext, CellResult, MethodSpec, Strategy
from .sections import MANAGED_MODEL_KEYS, MANAGED_TRAINER_KEYS, Section, imported

MODEL = Section("model", "FaceClassifier arguments", imported("facetransfer.training.module:FaceClassifier"),
                managed=MANAGED_MODEL_KEYS, ranges=imported("facetransfer.training.module:MODEL_RANGES"))
TRAINER = Section("trainer", "Lightning Trainer arguments", imported("lightning:Trainer"), managed=MANAGED_TRAINER_KEYS,
                  ranges=imported("facetransfer.training.trainer:TRAINER_RANGES"))
LOADER_KEYS = ("augment", "batch_size", "eval_batch_size", "num_workers")
DATA = Section("data", "loader arguments", imported("facetransfer.data:FaceDataModule"), only=LOADER_KEYS)
EARLY_STOPPING = Section(
    "early_stopping",
    "Lightning EarlyStopping arguments (monitor val/acc, val/verify_acc on an open-set split, mode max unless "
    "given); left out: no early stopping",
    imported("lightning.pytorch.callbacks:EarlyStopping"),
    preset={"monitor": "val/acc", "mode": "max"},
)


class LightningStrategy(Strategy):
    """A strategy that fits a :class:`~facetransfer.FaceClassifier` with Lightning in every cell."""

    trains = "lightning"
    sections: ClassVar[tuple[Section, ...]] = (MODEL, TRAINER, DATA, EARLY_STOPPING)

    def check(self, method: MethodSpec, config: Any) -> None:
        import lightning as L

        from ..data import FaceDataModule
        from ..training.module import FaceClassifier

        FaceClassifier(**method.classifier_args())
        FaceDataModule(**{**config.data, **method.data}, seed=0)
        L.Trainer(**method.trainer, logger=False, enable_checkpointing=False, callbacks=self.callbacks(method))

    def callbacks(self, method: MethodSpec) -> list:
        """Callbacks of this method's fit besides facetransfer's defaults (early stopping when configured)."""
        options = method.options.get("early_stopping")
        return [] if options is None else [EARLY_STOPPING.target()(**options)]

    def run(self, cell: Cell, ctx: CellContext) -> CellResult:
        import lightning as L
        from lightning.pytorch.loggers import TensorBoardLogger

        from ..data import FaceDataModule
        from ..training.devices import device_label
        from ..training.module import FaceClassifier
        from ..training.trainer import make_trainer

        method, manifest = cell.method, ctx.manifest(cell)
        L.seed_everything(cell.seed, workers=True, verbose=False)
        model = FaceClassifier(**method.classifier_args(), class_names=manifest.classes, open_set=manifest.open_set,
                               eval_class_names=manifest.eval_classes, features=ctx.feature_store)
        data = FaceDataModule(
            **{**ctx.config.data, **method.data}, seed=cell.seed, preprocess=model.preprocess, features=ctx.feature_store
        )
        data.use_manifest(manifest)
        folder = ctx.cell_dir(cell)
        if folder.exists():  # an unfinished cell's old logs and checkpoints
            shutil.rmtree(folder)
        logger = TensorBoardLogger(save_dir=str(ctx.logs_dir), name=method.slug, version=cell.folder)
        # a cell that stops is run again from its start: no last.ckpt to resume from is needed
        trainer = make_trainer(**method.trainer, logger=logger, default_root_dir=str(folder), save_last=False,
                               callbacks=self.callbacks(monitoring(method, model.selection_metric)))
        start = time.perf_counter()
        trainer.fit(model, data)
        train_seconds = time.perf_counter() - start
        if trainer.interrupted:
            raise KeyboardInterrupt
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        (result,) = trainer.test(model, data, ckpt_path=best or None, verbose=False)
        _prune_checkpoints(folder, ctx.config.checkpoints, best)
        return CellResult.from_logged(result, train_seconds=train_seconds, model=model,
                                      device=device_label(trainer.strategy.root_device))


def monitoring(method: MethodSpec, metric: str) -> MethodSpec:
    """``method`` with its early stopping on ``metric`` (the model's selection metric) where it monitors the
    preset ``val/acc``, which an open-set model does not log."""
    stopping = method.options.get("early_stopping")
    if stopping is None or stopping.get("monitor") != EARLY_STOPPING.preset["monitor"]:
        return method
    return replace(method, options={**method.options, "early_stopping": {**stopping, "monitor": metric}})


def _prune_checkpoints(folder: Path, policy: str, best: str) -> None:
    if policy == "all":
        return
    for path in folder.rglob("*.ckpt"):
        if policy == "none" or os.path.abspath(path) != os.path.abspath(best):
            path.unlink()


__all__ = ["DATA", "EARLY_STOPPING", "LOADER_KEYS", "MODEL", "TRAINER", "LightningStrategy", "monitoring"]
