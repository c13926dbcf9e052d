"""Small trained checkpoints for tests of what uses a trained model (export, gallery, prediction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

import facetransfer as ft
from facetransfer.training.trainer import find_last_checkpoint

TINY = {"widths": [8, 16], "fc_features": 16, "input_size": 32}
SYNTHETIC = {"num_identities": 4, "images_per_identity": 6, "image_size": 48}


def train_checkpoint(
    root: Path,
    data_args: dict[str, Any] | None = None,
    max_epochs: int = 1,
    limit_train_batches: int | float = 1.0,
    **model_args: Any,
) -> Path:
    """Fit a FaceClassifier (default: a tiny ``scratch_cnn`` on 4 synthetic identities) -> its last.ckpt.

    ``data_args``: FaceDataModule arguments (the data gets the model's preprocessing)."""
    L.seed_everything(0)
    model_args.setdefault("backbone", "scratch_cnn")
    if model_args["backbone"] == "scratch_cnn":
        model_args.setdefault("backbone_args", TINY)
    preprocess = ft.backbone_preprocess(
        model_args["backbone"], model_args.get("weights"), model_args.get("backbone_args"), model_args.get("input_size")
    )
    data_args = data_args or {"dataset": "synthetic", "dataset_args": SYNTHETIC, "num_workers": 0, "batch_size": 8}
    data = ft.FaceDataModule(**data_args, preprocess=preprocess)
    model = ft.FaceClassifier(**model_args, class_names=data.class_names, features=data.features)
    trainer = ft.make_trainer(
        max_epochs=max_epochs, limit_train_batches=limit_train_batches, default_root_dir=root, logger=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(model, data)
    return find_last_checkpoint(trainer)
