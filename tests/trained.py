"""Small trained checkpoints for tests of what uses a trained model (export, gallery, prediction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import facetransfer as ft

TINY = {"widths": [8, 16], "fc_features": 16, "input_size": 32}
SYNTHETIC = {"num_identities": 4, "images_per_identity": 6, "image_size": 48}


def train_checkpoint(
    root: Path,
    data: ft.FaceDataModule | None = None,
    max_epochs: int = 1,
    limit_train_batches: int | float = 1.0,
    **model_args: Any,
) -> Path:
    """Fit a FaceClassifier (default: a tiny ``scratch_cnn`` on 4 synthetic identities) -> its last.ckpt."""
    ft.seed_everything(0)
    data = data or ft.FaceDataModule("synthetic", dataset_args=SYNTHETIC, num_workers=0, batch_size=8)
    model_args.setdefault("backbone", "scratch_cnn")
    if model_args["backbone"] == "scratch_cnn":
        model_args.setdefault("backbone_args", TINY)
    model = ft.FaceClassifier(**model_args)
    trainer = ft.make_trainer(
        max_epochs=max_epochs, limit_train_batches=limit_train_batches, default_root_dir=root, logger=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(model, data)
    return Path(trainer.checkpoint_callback.last_model_path)
