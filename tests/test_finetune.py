"""Fine-tuning options: layer-wise learning rates, L2-SP, LP-FT's head fit and its resume, the lr finder."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.errors import ConfigError
from facetransfer.features import InMemoryFeatures
from facetransfer.sweep import load_sweep_config
from facetransfer.training.callbacks import LinearProbeHead

from .fakes import REPO
from .test_strategies import gaussian_features
from .test_sweep import tiny_sweep

TINY = {"widths": (8, 16), "fc_features": 32, "input_size": 32}
SYNTH = {"num_identities": 6, "images_per_identity": 10, "image_size": 40}


def tiny_data(**kwargs) -> ft.FaceDataModule:
    args = dict(dataset_args=SYNTH, batch_size=8, num_workers=0,
                preprocess=ft.backbone_preprocess("scratch_cnn", backbone_args=TINY))
    return ft.FaceDataModule("synthetic", **{**args, **kwargs})


def test_layer_wise_learning_rates():
    model = ft.FaceClassifier("resnet18", freeze="first:2", lr=1e-3, backbone_lr=1e-4, backbone_lr_decay=0.5,
                              class_names=["a", "b"])
    groups = {g["name"]: g["lr"] for g in model.param_groups()}
    assert groups == pytest.approx({"head": 1e-3, "backbone.layer4": 1e-4, "backbone.layer3": 5e-5, "backbone.layer2": 2.5e-5})
    plain = ft.FaceClassifier("resnet18", freeze="first:2", lr=1e-3, backbone_lr=1e-4, class_names=["a", "b"])
    assert [g["name"] for g in plain.param_groups()] == ["head", "backbone"]
    with pytest.raises(ConfigError, match="backbone_lr_decay must be in"):
        ft.FaceClassifier("resnet18", backbone_lr_decay=1.5)


def test_relative_learning_rates_follow_each_stages_weight_size():
    model = ft.FaceClassifier("resnet18", freeze="first:3", lr=1e-3, backbone_lr=1e-2, backbone_lr_relative=True,
                              class_names=["a", "b"])
    with torch.no_grad():  # layer4's weights 10x smaller than layer3's
        for name, p in model.backbone.stages.named_parameters():
            if p.ndim > 1:
                p.fill_(0.01 if name.startswith("layer4") else 0.1)
    groups = {g["name"]: g["lr"] for g in model.param_groups()}
    assert groups == pytest.approx({"head": 1e-3, "backbone.layer4": 1e-4, "backbone.layer3": 1e-3})
    decayed = ft.FaceClassifier("resnet18", freeze="first:3", backbone_lr=1e-2, backbone_lr_relative=True,
                                backbone_lr_decay=0.5, class_names=["a", "b"])
    with torch.no_grad():
        for p in decayed.backbone.stages.parameters():
            p.fill_(0.1)
    assert {g["name"]: g["lr"] for g in decayed.param_groups()}["backbone.layer3"] == pytest.approx(0.5 * 1e-2 * 0.1)
    per_feature = ft.FaceClassifier("resnet18", freeze="first:3", lr=1e-2, head_lr_per_feature=True, class_names=["a", "b"])
    assert per_feature.param_groups()[0]["lr"] == pytest.approx(1e-2 * 128 / 512)  # ResNet-18: 512 features


def test_l2sp_pulls_toward_the_pretrained_weights():
    model = ft.FaceClassifier("scratch_cnn", backbone_args=TINY, freeze="first:1", l2sp=0.5, class_names=["a", "b"])
    assert model._l2sp() == 0.0  # at the anchor
    trainable = [p for p in model.backbone.stages.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in trainable:
            p.add_(0.1)
    penalty = model._l2sp()
    assert float(penalty) == pytest.approx(0.5 * 0.5 * sum(p.numel() * 0.01 for p in trainable), rel=1e-4)
    penalty.backward()
    assert all(torch.allclose(p.grad, torch.full_like(p, 0.05)) for p in trainable)  # alpha * (w - w0)
    assert all(p.grad is None for p in model.backbone.stages.parameters() if not p.requires_grad)


def test_fit_head_solves_the_probe_problem():
    x, y = gaussian_features(0, 96)
    names = [f"id{i}" for i in range(8)]
    model = ft.FaceClassifier("scratch_cnn", backbone_args={"widths": [4], "fc_features": 32, "input_size": 16},
                              freeze="first:1", head_norm=True, class_names=names)
    before = torch.nn.functional.cross_entropy(model.backbone.head(x), y).item()
    loss = model.fit_head(x, y, head_c=1.0)
    assert loss < before / 3
    model.backbone.head.eval()
    accuracy = (model.backbone.head(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9


def lp_ft_run(root: Path, epochs: int, ckpt_path: str | None = None) -> tuple[ft.FaceClassifier, LinearProbeHead]:
    L.seed_everything(0)
    data = tiny_data()
    model = ft.FaceClassifier("scratch_cnn", backbone_args=TINY, freeze="first:1", head_norm=True, lr=1e-3,
                              class_names=data.class_names, features=data.features)
    head_fit = LinearProbeHead()
    trainer = ft.make_trainer(max_epochs=epochs, accelerator="cpu", default_root_dir=root, enable_progress_bar=False,
                              enable_model_summary=False, deterministic=True, callbacks=[head_fit])
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model, head_fit


def test_lp_ft_head_fit_then_a_resume_matches_an_uninterrupted_run(tmp_path):
    straight, fitted = lp_ft_run(tmp_path / "straight", epochs=3)
    assert fitted.done and fitted.loss is not None
    first, _ = lp_ft_run(tmp_path / "resumed", epochs=1)  # the head fit, then one epoch: a checkpoint
    (last,) = (tmp_path / "resumed").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["callbacks"]  # the callback's state is in the checkpoint
    resumed, again = lp_ft_run(tmp_path / "resumed", epochs=3, ckpt_path=str(last))
    assert again.loss is None  # no second head fit on resume
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_head_fit_reads_the_data_through_the_models_feature_provider(tmp_path):
    """The callback never reaches back through the trainer: the data's provider serves its splits."""
    data = tiny_data()
    data.setup("fit")
    model = ft.FaceClassifier("scratch_cnn", backbone_args=TINY, freeze="first:1", head_norm=True,
                              class_names=data.class_names, features=data.features)
    train = data.features.split_features("train", model.frozen_features())
    assert len(train) == len(data.manifest.train) and train.features.shape[1] == model.backbone.num_features
    assert InMemoryFeatures().splits is None
    with pytest.raises(ConfigError, match=r"serves no data: build the FaceDataModule with it"):
        InMemoryFeatures().split_features("train", model.frozen_features())
    alone = ft.FaceClassifier("scratch_cnn", backbone_args=TINY, freeze="first:1", class_names=data.class_names)
    trainer = ft.make_trainer(max_epochs=1, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False,
                              enable_model_summary=False, callbacks=[LinearProbeHead()], logger=False)
    with pytest.raises(ConfigError, match=r"FaceClassifier\(features=data.features\)"):
        trainer.fit(alone, data)


def test_lp_ft_and_early_stopping_in_a_sweep(tmp_path):
    methods = [{"strategy": "lp_ft", "backbone": "scratch_cnn", "lp": {"head_c": 0.5},
                "early_stopping": {"patience": 1}, "model": {"freeze": "first:1", "head_norm": True}}]
    config = load_sweep_config(tiny_sweep(tmp_path, methods=methods, trainer={"max_epochs": 20, "accelerator": "cpu"}))
    method = config.methods[0]
    assert method.options == {"early_stopping": {"monitor": "val/acc", "mode": "max", "patience": 1}, "lp": {"head_c": 0.5}}
    callbacks = method.runner.callbacks(method)
    assert [type(c).__name__ for c in callbacks] == ["EarlyStopping", "LinearProbeHead"] and callbacks[1].head_c == 0.5
    off = load_sweep_config(tiny_sweep(tmp_path, methods=[{"strategy": "lp_ft", "backbone": "scratch_cnn", "early_stopping": False}]))
    assert "early_stopping" not in off.methods[0].options
    assert [type(c).__name__ for c in off.methods[0].runner.callbacks(off.methods[0])] == ["LinearProbeHead"]
    recipe = load_sweep_config(tiny_sweep(tmp_path, methods=[{"strategy": "finetune", "backbone": "scratch_cnn"}])).methods[0]
    # finetune trains every epoch (no early stopping unless asked); lp_ft stops after 5 without progress
    assert recipe.model["head_norm"] is True and "early_stopping" not in recipe.options
    lp_ft = load_sweep_config(tiny_sweep(tmp_path, methods=[{"strategy": "lp_ft", "backbone": "scratch_cnn"}])).methods[0]
    assert lp_ft.options["early_stopping"]["patience"] == 5
    with pytest.raises(ConfigError, match=r"methods\[0\]\.early_stopping: unknown key 'patiance'; did you mean 'patience'"):
        load_sweep_config(tiny_sweep(tmp_path, methods=[{**methods[0], "early_stopping": {"patiance": 1}}]))


def test_lr_find_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])
    args = ["fit", "--model.backbone", "scratch_cnn", "--model.backbone_args", '{"widths": [8, 16], "fc_features": 32, "input_size": 32}',
            "--data.dataset_args", '{"num_identities": 6, "images_per_identity": 10, "image_size": 40}',
            "--data.num_workers", "0", "--data.batch_size", "8", "--trainer.max_epochs", "1", "--lr_find", "true",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out  # (5 batches are too few for a suggestion: the run keeps its lr and says so)
    assert "facetransfer: learning-rate finder suggests model.lr" in out or "model.lr stays 0.0001" in out
    assert list(tmp_path.rglob("lr_find.png"))


@pytest.mark.shared_data
def test_the_shipped_recipes_keep_what_a_face_network_knows_on_orl(orl_root, dlib_face_api, tmp_path):
    """finetune and lp_ft with the strategies' own recipes, a short fit of dlib's face ResNet on 8 ORL
    subjects: within two test images of logistic regression on its frozen features; the same fine-tuning
    with absolute learning rates, the control, destroys the features (8.6 % against 77.5 % on LFW)."""
    from facetransfer.sweep import run_sweep

    from .test_sweep import read_rows

    face_net = {"backbone": "dlib_resnet", "weights": "FACE_API"}
    config = {
        "name": "orl_recipes",
        "output_dir": str(tmp_path / "results"),
        "data": {"dataset": "folder", "root": str(orl_root), "max_identities": 8, "num_workers": 0,
                 "batch_size": 16, "val_fraction": 0.2, "test_fraction": 0.3},
        "trainer": {"max_epochs": 5, "accelerator": "cpu"},
        "train_samples": ["all"],
        "seeds": [0],
        "methods": [
            *({"strategy": s, **face_net} for s in ("features_logreg", "finetune", "lp_ft")),
            # the control: the same fine-tuning with absolute learning rates (head 1e-3, network 1e-4)
            {"name": "absolute", "strategy": "finetune", **face_net,
             "model": {"lr": 1.0e-3, "backbone_lr": 1.0e-4, "backbone_lr_relative": False}},
        ],
    }
    run_sweep(load_sweep_config(config), progress=False, report=False, echo=lambda _: None)
    top1 = {r["method"].split("/")[0]: float(r["test_top1"]) for r in read_rows(tmp_path / "results" / "results.csv")}
    tests = int(read_rows(tmp_path / "results" / "results.csv")[0]["test_images"])
    assert top1["features_logreg"] > 0.8, top1
    for strategy in ("finetune", "lp_ft"):
        assert top1[strategy] >= top1["features_logreg"] - 2.5 / tests, (strategy, top1)
    assert top1["absolute"] < top1["features_logreg"] - 2.5 / tests, top1


def test_shipped_experiments_fine_tune_at_the_rates_their_tables_were_measured_with():
    """A method that sets its own rates must not silently inherit the strategy's relative or per-feature
    scaling: the demo and offline_lfw tables were measured with absolute rates and a raw head."""
    def finetune(path: str) -> dict:
        (method,) = [m for m in load_sweep_config(str(REPO / path)).methods if m.strategy == "finetune"]
        return method.model | {"early_stopping": "early_stopping" in method.options}

    demo = finetune("configs/experiments/demo.yaml")
    assert (demo["lr"], demo["backbone_lr"], demo["backbone_lr_relative"], demo["head_lr_per_feature"], demo["head_norm"]) == (
        5e-4, None, False, False, False)
    offline = finetune("configs/experiments/offline_lfw.yaml")
    assert (offline["lr"], offline["backbone_lr"], offline["backbone_lr_relative"], offline["head_lr_per_feature"],
            offline["head_norm"], offline["early_stopping"]) == (1e-3, 1e-4, False, False, False, False)
    model = ft.FaceClassifier("mobilenet_v2", class_names=["a", "b"], **{k: v for k, v in offline.items() if k != "early_stopping"})
    assert {g["lr"] for g in model.param_groups()} == {1e-3, 1e-4}
