"""Running one cell of a sweep: the Lightning strategies and the paper's ``features_logreg``.

``scratch``, ``linear_probe`` and ``finetune`` are the same :class:`FaceClassifier` and
:func:`make_trainer` as ``facetransfer fit`` (only ``freeze`` differs); the test metrics
come from the best-val checkpoint. ``features_logreg`` fits scikit-learn's
``LogisticRegression`` on cached frozen features: seconds, not epochs. Both return one
results row::

    >>> row = run_cell(cell, context)  # doctest: +SKIP
    >>> row["test_top1"], row["train_seconds"]  # doctest: +SKIP
    (0.73, 41.2)
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from ..data.split import SplitManifest
from ..errors import ConfigError
from ..module import FaceClassifier
from ..trainer import make_trainer
from .config import SweepConfig
from .feature_store import FeatureStore, SweepDataModule
from .grid import Cell, subset_manifest


@dataclass
class SweepContext:
    """What every cell of a sweep shares: the config, each seed's split, the feature store."""

    config: SweepConfig
    pools: dict[int, SplitManifest]
    feature_store: FeatureStore
    logs_dir: Path
    notices: list[str] = field(default_factory=list)

    def cell_dir(self, cell: Cell) -> Path:
        return self.logs_dir / cell.method.slug / cell.folder

    def manifest(self, cell: Cell) -> SplitManifest:
        return subset_manifest(self.pools[cell.seed], cell.train_samples)


def device_label(device: torch.device) -> str:
    """``NVIDIA H200`` for a CUDA device, ``cpu (2 cores)`` for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        return f"cpu ({cores} cores)"
    return device.type


def feature_device(trainer_args: dict[str, Any]) -> torch.device:
    """Where features_logreg extracts features: the sweep's accelerator (CUDA when available)."""
    accelerator = str(trainer_args.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def feature_autocast(trainer_args: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """The autocast dtype a Lightning cell would extract features with (so both strategies share the cache)."""
    if device.type != "cuda":
        return None
    precision = trainer_args.get("precision")
    if precision is None:
        try:
            from ..trainer import default_precision
        except ImportError:  # an older facetransfer without GPU precision defaults
            return None
        precision = default_precision(trainer_args.get("accelerator", "auto"))
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))


def _row(cell: Cell, ctx: SweepContext, manifest: SplitManifest, metrics: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {
        "dataset": ctx.config.data.get("dataset", "synthetic"),
        "method": cell.method.name,
        "strategy": cell.method.strategy,
        "backbone": cell.method.backbone,
        "weights": cell.method.weights_label,
        "train_samples": cell.train_samples,
        "seed": cell.seed,
        "identities": manifest.num_classes,
        "test_images": len(manifest.test),
        "pool_size": cell.pool_size,
        "test_top1": float(metrics["top1"]),
        "test_top5": float(metrics["top5"]),
        "test_macro_f1": float(metrics["macro_f1"]),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def _fresh_dir(path: Path) -> Path:
    """An unfinished cell's old logs and checkpoints are removed before it runs again."""
    if path.exists():
        shutil.rmtree(path)
    return path


def run_lightning_cell(cell: Cell, ctx: SweepContext) -> dict[str, Any]:
    """Fit ``FaceClassifier`` with ``make_trainer`` on the cell's split; test the best-val checkpoint."""
    method, config = cell.method, ctx.config
    start = time.perf_counter()
    L.seed_everything(cell.seed, workers=True, verbose=False)
    model = FaceClassifier(**method.classifier_args())
    data = SweepDataModule(**{**config.data, **method.data}, seed=cell.seed)
    data.feature_store = ctx.feature_store
    manifest = ctx.manifest(cell)
    data.use_manifest(manifest)

    folder = _fresh_dir(ctx.cell_dir(cell))
    logger = TensorBoardLogger(save_dir=str(ctx.logs_dir), name=method.slug, version=cell.folder)
    trainer = make_trainer(**method.trainer, logger=logger, default_root_dir=str(folder))
    fit_start = time.perf_counter()
    trainer.fit(model, data)
    train_seconds = time.perf_counter() - fit_start
    if trainer.interrupted:
        raise KeyboardInterrupt
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    (result,) = trainer.test(model, data, ckpt_path=best or None, verbose=False)
    device = trainer.strategy.root_device
    _prune_checkpoints(folder, config.checkpoints, best)
    metrics = {"top1": result["test/acc"], "top5": result["test/acc_top5"], "macro_f1": result["test/f1_macro"]}
    return _row(
        cell,
        ctx,
        manifest,
        metrics,
        train_seconds=train_seconds,
        cell_seconds=time.perf_counter() - start,
        device=device_label(device),
    )


def _prune_checkpoints(folder: Path, policy: str, best: str) -> None:
    if policy == "all":
        return
    for path in folder.rglob("*.ckpt"):
        if policy == "none" or os.path.abspath(path) != os.path.abspath(best):
            path.unlink()


def logistic_regression(args: dict[str, Any], seed: int):
    """``StandardScaler`` + ``LogisticRegression(**args)`` (scaled features converge in few iterations)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    args = {"random_state": seed, **args}
    try:
        return make_pipeline(StandardScaler(), LogisticRegression(**args))
    except TypeError as err:
        raise ConfigError(f"logreg: {err}") from None


def classification_metrics(probs: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, float]:
    """Top-1, top-5 and macro-F1 with the same torchmetrics functions as the Lightning cells."""
    preds, y = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(target, dtype=torch.long)
    return {
        "top1": multiclass_accuracy(preds, y, num_classes, average="micro").item(),
        "top5": multiclass_accuracy(preds, y, num_classes, top_k=min(5, num_classes), average="micro").item(),
        "macro_f1": multiclass_f1_score(preds, y, num_classes, average="macro").item(),
    }


def run_features_logreg_cell(cell: Cell, ctx: SweepContext) -> dict[str, Any]:
    """The paper's feature extraction + logistic regression on the cell's first N pool images."""
    from sklearn.exceptions import ConvergenceWarning

    method = cell.method
    start = time.perf_counter()
    manifest = ctx.manifest(cell)
    device = feature_device(ctx.config.trainer)
    store = ctx.feature_store
    L.seed_everything(cell.seed, workers=True, verbose=False)  # the backbone of a random-init baseline
    model = FaceClassifier(**method.classifier_args())  # builds the backbone only; it is not trained
    model.to(device)
    feats, _ = store.features(model, device=device, autocast_dtype=feature_autocast(ctx.config.trainer, device))
    train, test = store.select(feats, manifest.train), store.select(feats, manifest.test)

    classifier = logistic_regression(method.logreg, cell.seed)
    train_labels = train.labels.numpy()
    fit_start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(train.features.numpy(), train_labels)
    train_seconds = time.perf_counter() - fit_start
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        ctx.notices.append(
            f"{cell.label}: LogisticRegression did not converge in max_iter={method.logreg.get('max_iter')} "
            "iterations (raise methods[].logreg.max_iter)"
        )
    seen = classifier.classes_  # identities absent from a small training set get probability 0
    probs = np.zeros((len(test), manifest.num_classes), dtype=np.float32)
    probs[:, seen] = classifier.predict_proba(test.features.numpy())
    metrics = classification_metrics(probs, test.labels.numpy(), manifest.num_classes)
    del model
    return _row(
        cell,
        ctx,
        manifest,
        metrics,
        train_seconds=train_seconds,
        cell_seconds=time.perf_counter() - start,
        device=device_label(device),
    )


CellRunner = Callable[[Cell, SweepContext], dict[str, Any]]
RUNNERS: dict[str, CellRunner] = {
    "scratch": run_lightning_cell,
    "linear_probe": run_lightning_cell,
    "finetune": run_lightning_cell,
    "features_logreg": run_features_logreg_cell,
}


def run_cell(cell: Cell, ctx: SweepContext) -> dict[str, Any]:
    """Run one cell with its strategy's runner; returns its results row."""
    return RUNNERS[cell.method.strategy](cell, ctx)


__all__ = ["RUNNERS", "SweepContext", "classification_metrics", "device_label", "run_cell"]
