"""Open-set training: an identity-disjoint split, verification while training, the projection as the embedding."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import facetransfer as ft
from facetransfer.cli.main import main
from facetransfer.verification.openset import labelled_pairs_metrics

TINY = {"widths": [8, 16], "fc_features": 16, "input_size": 32}


def test_labelled_pairs_metrics_separates_clusters_and_repeats():
    torch.manual_seed(0)
    labels = torch.arange(20).repeat_interleave(3)
    centres = torch.nn.functional.normalize(torch.randn(20, 16), dim=1)
    tight = centres[labels] + 0.05 * torch.randn(60, 16)
    loose = torch.randn(60, 16)
    good = labelled_pairs_metrics(tight, labels, pairs=40)
    assert good.num_pairs == 80 and good.num_same == 40 and good.accuracy > 0.95
    assert labelled_pairs_metrics(loose, labels, pairs=40).accuracy < 0.8
    assert labelled_pairs_metrics(tight, labels, pairs=40).fold_accuracies == good.fold_accuracies  # same pairs


def test_labelled_pairs_metrics_needs_a_person_with_two_images():
    with pytest.raises(ft.errors.DataError, match="no person has 2 images"):
        labelled_pairs_metrics(torch.randn(4, 8), torch.arange(4))


def test_an_open_set_fit_on_orl_verifies_while_training_and_verify_uses_the_projection(orl_root, tmp_path, capsys):
    L.seed_everything(0)
    model_args = {"backbone": "scratch_cnn", "backbone_args": TINY, "head": "arcface", "embedding_dim": 8, "lr": 1e-3}
    data = ft.FaceDataModule(dataset="folder", root=str(orl_root), split_by="identity", val_fraction=0.2,
                             test_fraction=0.2, num_workers=0, batch_size=16,
                             preprocess=ft.backbone_preprocess("scratch_cnn", backbone_args=TINY))
    assert data.open_set and not set(data.manifest.identities("train")) & set(data.manifest.identities("test"))
    model = ft.FaceClassifier(**model_args, class_names=data.class_names, open_set=data.open_set,
                              eval_class_names=data.eval_class_names, features=data.features)
    trainer = ft.make_trainer(max_epochs=2, limit_train_batches=3, default_root_dir=tmp_path,
                              enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, data)
    assert 0.0 <= float(trainer.callback_metrics["val/verify_acc"]) <= 1.0
    assert "val/verify_auc" in trainer.callback_metrics and "val/acc" not in trainer.callback_metrics
    best = trainer.checkpoint_callback
    assert best.monitor == "val/verify_acc" and best.best_model_path
    (tested,) = trainer.test(model, data, ckpt_path=best.best_model_path, verbose=False)
    assert 0.0 <= tested["test/verify_acc"] <= 1.0 and "test/acc" not in tested
    # TensorBoard: the test people's embeddings in the projector, named (no confusion: nobody was classified)
    (metadata,) = Path(trainer.log_dir).rglob("metadata.tsv")
    assert sorted(set(metadata.read_text().split())) == data.manifest.identities("test")
    rows = (metadata.parent / "tensors.tsv").read_text().splitlines()
    assert len(rows) == len(data.manifest.test) and len(rows[0].split("\t")) == 8  # the 8-d projection
    assert (metadata.parent / "sprite.png").is_file()
    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert "test/confusion" not in events.Tags()["images"]

    pairs = tmp_path / "heldout.txt"
    split = tmp_path / "split.json"
    data.manifest.save(split)
    assert main(["pairs", "make", "--root", str(orl_root), "--identities", str(split), "--same", "20",
                 "--folds", "2", "--out", str(pairs)]) == 0
    out = tmp_path / "verify"
    assert main(["verify", "--pairs", str(pairs), "--root", str(orl_root), "--ckpt_path", best.best_model_path,
                 "--out", str(out), "--num_workers", "0"]) == 0  # the face crop of training (1.0: ORL)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["num_features"] == 8  # the projection, not the backbone's 16 features
    assert metrics["model"]["face_crop"] == 1.0  # the checkpoint's own, not LFW's 0.6
    loaded = ft.FaceClassifier.load_from_checkpoint(best.best_model_path)
    assert loaded.backbone.embedding_size == 8 and loaded.hparams.head == "arcface"
