"""One ``align`` option everywhere: FaceDataModule (split, manifest, bad-image policy, checkpoints), the
``fit``/``test`` CLI, Embedder, Gallery, ``verify --align`` and the sweep -- with a scripted detector;
and ``verify --align mtcnn`` on real LFW pairs when the shared data and MTCNN weights are present."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.detection import Aligner, register_detector, template_for_input
from facetransfer.detection import registry as detector_registry
from facetransfer.errors import DataError
from facetransfer.verification import Embedder, Gallery

from .detection_fakes import ScriptedDetector
from .fakes import make_folder_tree, make_lfw_tree
from .trained import TINY

PREPROCESS = ft.backbone_preprocess("scratch_cnn", backbone_args=TINY)


@pytest.fixture
def scripted(monkeypatch):
    """A ScriptedDetector registered as ``scripted`` (the registry is restored afterwards)."""
    monkeypatch.setattr(detector_registry.DETECTORS, "builders", dict(detector_registry.DETECTORS.builders))
    detector = ScriptedDetector()
    register_detector("scripted")(lambda weights=None, device=None: detector)
    return detector


@pytest.fixture
def faces(tmp_path) -> Path:
    """4 people x 6 images, and one flat (faceless) image of person_1."""
    root = make_folder_tree(tmp_path / "faces", size=64)
    Image.new("RGB", (64, 64), (40, 40, 40)).save(root / "person_1" / "blank.png")
    return root


def aligned_data(root: Path, **kwargs) -> ft.FaceDataModule:
    args = dict(dataset="folder", root=str(root), align="scripted", num_workers=0, batch_size=8,
                min_images_per_identity=3, preprocess=PREPROCESS)
    return ft.FaceDataModule(**{**args, **kwargs})


def test_the_datamodule_aligns_every_image_and_applies_the_bad_image_policy(faces, scripted):
    with pytest.raises(DataError, match=r"1 unreadable image\(s\) or image\(s\) without a face in .*faces "
                                        r"\(set data.on_bad_image: skip.*\n  .*person_1/blank.png: no face found"):
        _ = aligned_data(faces).manifest

    data = aligned_data(faces, on_bad_image="skip")
    manifest = data.manifest
    assert [s["key"] for s in manifest.skipped] == ["person_1/blank.png"]
    assert "no face found" in manifest.skipped[0]["reason"]
    assert manifest.settings["align"] == "scripted" and data.face_crop == 1.0  # chips need no central crop
    assert manifest.source["align"]["template"] == "arcface"  # scratch_cnn: the ArcFace layout
    detected = scripted.images_seen
    assert detected == 25  # every image once, before training

    # an item is the backbone's eval transform of the aligner's chip
    dataset = data.dataset_for("test", train_transform=False)
    key = manifest.test[0][0]
    aligner = Aligner(scripted, template_for_input(PREPROCESS))
    expected = PREPROCESS.eval_transform(1.0)(aligner.align(faces / key))
    assert torch.allclose(dataset[0][0], expected)
    assert scripted.images_seen == detected  # cached: no second detection
    assert dataset[0][0].shape == (3, 32, 32)


def test_dlib_backbones_get_the_dlib_template(faces, scripted):
    data = aligned_data(faces, on_bad_image="skip", preprocess=ft.backbone_preprocess("dlib_resnet"))
    assert data.manifest.source["align"]["template"] == "dlib"
    assert aligned_data(faces, align_template="dlib", on_bad_image="skip").source.aligner.template.name == "dlib"


def test_one_data_module_serves_each_backbone_its_own_chips(faces, scripted):
    data = aligned_data(faces, on_bad_image="skip")  # the tiny scratch_cnn: the ArcFace layout at 32 px
    dlib = data.source_for(ft.backbone_preprocess("dlib_resnet"))
    assert dlib.aligner.template.name == "dlib" and dlib.aligner.size == 150
    assert data.source_for(ft.backbone_preprocess("dlib_resnet")) is dlib  # one aligner per backbone input
    assert data.source_for(PREPROCESS) is data.source
    key = data.manifest.test[0][0]
    assert dlib.open(key).size == (150, 150) and data.source.open(key).size == (PREPROCESS.resize_size,) * 2


def test_an_unknown_align_value_is_one_clear_error(faces):
    with pytest.raises(ft.ConfigError, match=r"data.align: unknown value 'viola'; known: none, landmarks, mtcnn"):
        aligned_data(faces, align="viola")


def test_fit_then_test_from_the_checkpoint_keeps_the_alignment(faces, scripted, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])
    runs = tmp_path / "runs"
    common = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]
    code = main(["fit", "--model.backbone", "scratch_cnn", "--model.backbone_args", json.dumps(TINY),
                 "--data.dataset", "folder", "--data.root", str(faces), "--data.align", "scripted",
                 "--data.on_bad_image", "skip", "--data.num_workers", "0", "--data.batch_size", "8",
                 "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(runs), *common])
    assert code == 0
    ckpt = next(runs.rglob("last.ckpt"))
    split = json.loads(next(runs.rglob("split.json")).read_text())
    assert split["settings"]["align"] == "scripted" and split["source"]["align"]["template"] == "arcface"
    seen = scripted.images_seen
    capsys.readouterr()
    # no data options: the checkpoint's split brings its source and alignment back
    assert main(["test", "--ckpt_path", str(ckpt), "--data.num_workers", "0", *common]) == 0
    assert "test/acc" in capsys.readouterr().out
    assert scripted.images_seen == seen  # landmarks came from the on-disk cache


def test_embedder_and_gallery_align_and_remember_it(faces, scripted, tmp_path):
    torch.manual_seed(0)
    model = ft.FaceClassifier("scratch_cnn", backbone_args=TINY)
    embedder = Embedder(model, align="scripted")
    image = faces / "person_0" / "0.jpg"
    chip = Aligner(scripted, template_for_input(model.backbone.preprocess)).align(image)
    assert torch.allclose(embedder(image), embedder(embedder.transform(chip)[None]), atol=1e-6)
    assert torch.allclose(embedder.embed_files([image]), embedder(image), atol=1e-5)
    assert embedder.describe()["align"] == "scripted" and embedder.describe()["alignment"]["template"] == "arcface"
    with pytest.raises(DataError, match=r"1 image\(s\) could not be read:\n  no face found in .*blank.png"):
        embedder.embed_files([image, faces / "person_1" / "blank.png"])

    (faces / "person_1" / "blank.png").unlink()
    gallery = Gallery(model, align="scripted", match="nearest")  # the probe is enrolled: similarity 1
    gallery.enroll_folder(faces)
    gallery.save(tmp_path / "people.gallery")
    loaded = Gallery.load(tmp_path / "people.gallery", model)
    assert loaded.embedder.align == "scripted"
    assert loaded.identify(image).name == "person_0"


def test_verify_align_command(tmp_path, scripted, capsys, monkeypatch):
    from .test_verification import PEOPLE, write_view1

    monkeypatch.setattr(sys, "argv", ["facetransfer"])
    root = make_lfw_tree(tmp_path / "lfw", PEOPLE, size=48)
    write_view1(root / "pairsDevTrain.txt")
    code = main(["verify", "--pairs", str(root / "pairsDevTrain.txt"), "--backbone", "scratch_cnn", "--align", "scripted",
                 "--folds", "2", "--input_size", "48", "--num_workers", "0", "--out", str(tmp_path / "verify")])
    assert code == 0
    assert re.search(r"face_crop 1\b", capsys.readouterr().out)
    metrics = json.loads((tmp_path / "verify" / "metrics.json").read_text())
    assert scripted.images_seen == 21 and "scripted" in json.dumps(metrics)


def test_a_sweep_cell_sees_aligned_faces(faces, scripted, tmp_path):
    from facetransfer.sweep import load_sweep_config, run_sweep

    (faces / "person_1" / "blank.png").unlink()
    config = tmp_path / "sweep.yaml"
    config.write_text(f"""
name: aligned
output_dir: {tmp_path / 'out'}
data: {{dataset: folder, root: {faces}, align: scripted, num_workers: 0, batch_size: 8}}
train_samples: [all]
methods:
  - {{strategy: prototype, backbone: scratch_cnn, model: {{backbone_args: {json.dumps(TINY)}}}}}
""")
    run_sweep(load_sweep_config([str(config)]))
    assert scripted.images_seen == 24
    features = list((tmp_path / "out").rglob("*.pt"))
    assert features, "the sweep caches the features it extracted"
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and ",prototype," in rows[1]


@pytest.mark.skipif(not Path("../shared/data/lfw-devtrain/pairsDevTrain.txt").is_file(), reason="needs ../shared/data")
def test_verify_align_mtcnn_on_real_lfw_pairs(mtcnn_weights, dlib_face_api, tmp_path, capsys, monkeypatch):
    """The command of the docs on the first 40 pairsDevTrain pairs: aligned faces verify well."""
    monkeypatch.setattr(sys, "argv", ["facetransfer"])
    lines = Path("../shared/data/lfw-devtrain/pairsDevTrain.txt").read_text().splitlines()
    same, different = int(lines[0]), lines[1 + int(lines[0]):]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(["20", *lines[1:21], *different[:20]]) + "\n")
    assert same > 20
    code = main(["verify", "--pairs", str(pairs), "--root", "../shared/data/lfw-devtrain", "--align", "mtcnn",
                 "--backbone", "dlib_resnet", "--weights", "FACE_API", "--folds", "2", "--num_workers", "0",
                 "--out", str(tmp_path / "verify")])
    assert code == 0
    metrics = json.loads((tmp_path / "verify" / "metrics.json").read_text())
    auc = metrics.get("auc", metrics.get("metrics", {}).get("auc"))
    assert auc is not None and auc > 0.95, metrics
    assert np.isfinite(auc)
