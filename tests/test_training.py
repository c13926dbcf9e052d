"""FaceClassifier + FaceDataModule through Lightning's Trainer on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import facetransfer as ft
from facetransfer.errors import ConfigError, WeightsError
from facetransfer.training.trainer import find_last_checkpoint

TINY = {"widths": (8, 16), "fc_features": 32, "input_size": 32}


def tiny_data(**kwargs) -> ft.FaceDataModule:
    args = dict(dataset_args={"num_identities": 6, "images_per_identity": 8, "image_size": 40},
                batch_size=16, num_workers=0, preprocess=ft.backbone_preprocess("scratch_cnn", backbone_args=TINY))
    args.update(kwargs)
    return ft.FaceDataModule("synthetic", **args)


def tiny_model(data: ft.FaceDataModule, **kwargs) -> ft.FaceClassifier:
    """A tiny scratch_cnn for ``data``: its identities and its frozen-feature provider."""
    return ft.FaceClassifier("scratch_cnn", **{"backbone_args": TINY, **kwargs}, class_names=data.class_names,
                             features=data.features)


def tiny_trainer(tmp_path, **kwargs) -> L.Trainer:
    args = dict(max_epochs=2, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False,
                enable_model_summary=False, log_every_n_steps=1, deterministic=True)
    args.update(kwargs)
    return ft.make_trainer(**args)


def test_fit_test_writes_manifest_checkpoint_and_tensorboard(tmp_path):
    L.seed_everything(0)
    data = tiny_data()
    model = tiny_model(data, lr=1e-3)
    trainer = tiny_trainer(tmp_path)
    trainer.fit(model, data)
    (result,) = trainer.test(model, data)
    assert set(result) >= {"test/acc", "test/acc_top5", "test/f1_macro", "test/loss"}
    assert 0 <= result["test/acc"] <= result["test/acc_top5"] <= 1

    log_dir = trainer.log_dir
    manifest = json.loads(open(f"{log_dir}/split.json").read())
    assert manifest["classes"] == model.class_names and manifest["source"]["dataset"] == "synthetic"

    ckpt = torch.load(str(find_last_checkpoint(trainer)), weights_only=True)
    assert ckpt["facetransfer"]["backbone"] == "scratch_cnn" and ckpt["facetransfer"]["freeze"] == "none"
    assert ckpt["hyper_parameters"]["class_names"] == model.class_names
    assert ckpt["FaceDataModule"]["manifest"]["test"] == manifest["test"]

    events = EventAccumulator(log_dir)
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc_top5", "val/f1_macro"} <= scalars
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["backbone"].string_value == "scratch_cnn" and hparams["lr"].number_value == 1e-3


def test_checkpoint_restores_without_pretrained_file_and_data_options(tmp_path):
    L.seed_everything(0)
    start = tmp_path / "start.pth"
    torch.save(ft.get_backbone("scratch_cnn", **TINY).state_dict(), start)
    data = tiny_data(seed=5, train_samples=20)
    model = tiny_model(data, weights_path=str(start), lr=1e-3)
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, data)
    (expected,) = trainer.test(model, data, verbose=False)
    start.unlink()  # the starting weights are gone: the checkpoint must be enough

    path = str(find_last_checkpoint(trainer))
    restored = ft.FaceClassifier.load_from_checkpoint(path)
    assert restored.class_names == model.class_names
    # another dataset configured: the checkpoint's split (and source) wins
    fresh_data = ft.FaceDataModule("folder", root=str(tmp_path), num_workers=0, preprocess=restored.preprocess)
    (again,) = tiny_trainer(tmp_path).test(restored, fresh_data, ckpt_path=path, verbose=False)
    assert again["test/acc"] == pytest.approx(expected["test/acc"])
    assert fresh_data.manifest.settings["seed"] == 5 and fresh_data.dataset == "synthetic"


def test_checkpoint_of_other_backbone_or_class_count_is_refused(tmp_path):
    data = tiny_data()
    model = tiny_model(data)
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, data)
    path = str(find_last_checkpoint(trainer))
    other = ft.FaceClassifier("resnet18", class_names=[f"p{i}" for i in range(6)])
    with pytest.raises(WeightsError, match=r"checkpoint holds backbone 'scratch_cnn' with 6 classes; this model is 'resnet18' with 6"):
        other.on_load_checkpoint(torch.load(path, weights_only=True))
    fewer = ft.FaceClassifier("scratch_cnn", backbone_args=TINY, class_names=["a", "b"])
    with pytest.raises(WeightsError, match="with 6 classes; this model is 'scratch_cnn' with 2 classes"):
        fewer.on_load_checkpoint(torch.load(path, weights_only=True))


def test_model_and_data_must_agree(tmp_path):
    """Identities and input size of the model and the data are checked on the first batch."""
    model = ft.FaceClassifier("scratch_cnn", backbone_args=TINY, class_names=["x", "y"])
    with pytest.raises(ConfigError, match="labels up to 5 but this model has 2 identities"):
        tiny_trainer(tmp_path, max_epochs=1).fit(model, tiny_data())
    data = tiny_data(preprocess=None)  # ImageNet's 224 px, not the model's
    with pytest.raises(ConfigError, match="the data gives 224 px images but this model expects 32 px"):
        tiny_trainer(tmp_path, max_epochs=1).fit(tiny_model(data), data)
    with pytest.raises(ConfigError, match="needs class_names"):
        tiny_trainer(tmp_path, max_epochs=1).fit(ft.FaceClassifier("scratch_cnn", backbone_args=TINY), tiny_data())


def test_linear_probe_trains_head_on_cached_features(tmp_path):
    L.seed_everything(0)
    data = tiny_data()
    model = tiny_model(data, freeze="all", lr=1e-2)
    frozen = {k: v.clone() for k, v in model.backbone.stages.state_dict().items()}
    trainer = tiny_trainer(tmp_path, max_epochs=3)
    trainer.fit(model, data)
    first_batch = next(iter(trainer.train_dataloader))
    assert first_batch[0].shape[1:] == (32,)  # features, not images
    for k, v in model.backbone.stages.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    (result,) = trainer.test(model, data, verbose=False)
    assert result["test/acc"] > 1 / 6  # better than chance on held-out images


def test_predict_folder_gives_names_and_confidence(tmp_path, folder_tree):
    model = ft.FaceClassifier("scratch_cnn", backbone_args=TINY, class_names=["a", "b", "c"])
    data = ft.FaceDataModule("folder", root=str(folder_tree), predict_root=str(folder_tree / "person_1"), num_workers=0,
                             preprocess=model.preprocess)
    out = tiny_trainer(tmp_path).predict(model, data)
    keys = [k for batch in out for k in batch["key"]]
    assert len(keys) == 6 and all(n in "abc" for batch in out for n in batch["prediction"])
    assert all(0 <= c <= 1 for batch in out for c in batch["confidence"].tolist())


def test_datamodule_reuses_a_saved_split(tmp_path):
    data = tiny_data(train_samples=12, seed=3)
    path = data.manifest.save(tmp_path / "split.json")
    again = tiny_data(split_manifest=str(path), train_samples="all", seed=99)
    assert again.manifest.train == data.manifest.train and len(again.manifest.train) == 12


def test_datamodule_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="on_bad_image"):
        tiny_data(on_bad_image="ignore")
    with pytest.raises(ConfigError, match="batch_size"):
        tiny_data(batch_size=0)
    with pytest.raises(ConfigError, match="train_samples"):
        tiny_data(train_samples=0).manifest


def test_each_metric_keeps_its_own_state_across_batches():
    """A first batch that is all correct must not tie macro-F1 to the top-5 states (torchmetrics compute groups)."""
    from facetransfer.training.module import _metrics

    metrics = _metrics(4, "test/")
    targets = torch.arange(4)
    metrics.update(torch.eye(4) * 5, targets)  # all correct
    metrics.update(torch.roll(torch.eye(4), 1, dims=1) * 5, targets)  # all wrong at top-1
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["test/acc"] == pytest.approx(0.5)
    assert values["test/acc_top5"] == pytest.approx(1.0)
    assert values["test/f1_macro"] == pytest.approx(0.5)


def test_an_lbfgs_probe_logs_its_iterations_and_stops_once_converged(tmp_path):
    data = tiny_data(batch_size="all")
    model = tiny_model(data, freeze="all", optimizer="lbfgs", head_c=1.0, head_norm=True)
    trainer = tiny_trainer(tmp_path, max_epochs=10)
    trainer.fit(model, data)
    assert trainer.current_epoch < 10  # stopped: later epochs would repeat the converged solution
    events = EventAccumulator(trainer.log_dir)
    events.Reload()
    losses = [e.value for e in events.Scalars("train/lbfgs_loss")]
    assert len(losses) > 5 and losses[-1] < losses[0]  # one point per L-BFGS evaluation


def test_a_test_run_shows_its_faces_in_tensorboard(tmp_path):
    """Confusion figure, misclassified faces and the embedding projector with a face sprite."""
    data = tiny_data()
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    model = tiny_model(data)
    trainer.fit(model, data)
    trainer.test(model, data, verbose=False)
    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {"test/confusion", "test/misclassified"} <= set(events.Tags()["images"])
    projector = (Path(trainer.log_dir) / "projector_config.pbtxt").read_text()
    assert "test/embeddings" in projector and "sprite" in projector
    folder = next(Path(trainer.log_dir).rglob("metadata.tsv")).parent
    assert len((folder / "metadata.tsv").read_text().splitlines()) == len(data.manifest.test)
    assert (folder / "sprite.png").is_file()


def test_a_probe_on_cached_features_shows_the_faces_of_its_test_split(tmp_path):
    data = tiny_data(batch_size="all")
    model = tiny_model(data, freeze="all", optimizer="lbfgs", head_c=1.0)
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, data)
    trainer.test(model, data, verbose=False)
    assert next(Path(trainer.log_dir).rglob("sprite.png")).is_file()


def test_the_confusion_figure_of_many_identities_shows_the_most_confused_pairs():
    from facetransfer.training.test_faces import confusion_figure

    names = [f"person_{k}" for k in range(50)]
    labels, predicted = torch.tensor([0, 0, 0, 1, 2]), torch.tensor([7, 7, 0, 1, 9])
    (ax, *_) = confusion_figure(labels, predicted, names).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["person_0 → person_7", "person_2 → person_9"]
    assert [p.get_width() for p in ax.patches] == [2, 1]


def test_a_last_training_batch_of_one_image_is_left_out(tmp_path):
    """17 images in batches of 16: the lone 17th would break BatchNorm (head_norm, the projection) in training."""
    data = tiny_data(train_samples=17, batch_size=16)
    model = tiny_model(data, head_norm=True, head="arcface", embedding_dim=8)
    trainer = tiny_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, data)
    loader = data.train_dataloader()
    assert len(loader) == 1 and [len(y) for _, y, *_ in loader] == [16]
    assert trainer.global_step == 2  # one batch per epoch
    kept = tiny_data(train_samples=18, batch_size=16).train_dataloader()
    assert sorted(len(y) for _, y, *_ in kept) == [2, 16]  # a last batch of two stays
