"""``facetransfer export``: ONNX and TorchScript files that compute what PyTorch does, and their sidecar."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.errors import ConfigError, WeightsError
from facetransfer.export import (
    export_checkpoint,
    export_model,
    generated_faces,
    read_sidecar,
    sidecar_path,
    unit_transform,
)
from facetransfer.io.checkpoint import CheckpointInfo
from facetransfer.io.images import load_rgb

from .fakes import REPO
from .trained import train_checkpoint

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("tiny"))


def run_exported(path: Path, x: torch.Tensor) -> np.ndarray:
    if path.suffix == ".onnx":
        return ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        return torch.jit.load(str(path))(x).numpy()


def pytorch_outputs(model: ft.FaceClassifier, images, face_crop: float, embeddings: bool) -> tuple[torch.Tensor, np.ndarray]:
    """The [0, 1] batch the caller feeds, and what the PyTorch model computes from the same images."""
    unit = torch.stack([unit_transform(model.preprocess, face_crop)(im) for im in images])
    normalised = torch.stack([model.preprocess.eval_transform(face_crop)(im) for im in images])
    model.eval()
    with torch.no_grad():
        out = model.embed(normalised) if embeddings else model(normalised)
    return unit, out.numpy()


def check_file(path: Path, model: Path | ft.FaceClassifier, images, embeddings: bool) -> dict:
    """The exported file agrees with PyTorch within 1e-4 at batch sizes N and 1; returns the sidecar."""
    meta = read_sidecar(path)
    if isinstance(model, Path):
        model = ft.FaceClassifier.load_from_checkpoint(model)
    unit, expected = pytorch_outputs(model, images, meta["face_crop"], embeddings)
    assert unit.shape[-1] == meta["input_size"] == model.preprocess.crop_size
    got = run_exported(path, unit)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(run_exported(path, unit[1:2]) - expected[1:2]).max() <= 1e-4  # another batch size
    if embeddings:
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert meta["parity"]["passed"] and meta["parity"]["max_abs_diff"] <= 1e-4 and meta["parity"]["batch_sizes"][1] == 1
    assert meta["classes"] == model.class_names and meta["output_name"] == ("embeddings" if embeddings else "logits")
    assert meta["mean"] == pytest.approx(list(model.preprocess.mean)) and meta["std"] == pytest.approx(list(model.preprocess.std))
    return meta


def test_export_command_onnx_logits_and_torchscript_embeddings(tiny_checkpoint, tmp_path, capsys):
    onnx_file, ts_file = tmp_path / "out" / "tiny.onnx", tmp_path / "out" / "tiny.pt"
    assert main(["export", "--ckpt_path", str(tiny_checkpoint), "--out", str(onnx_file)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {onnx_file} (onnx, logits of scratch_cnn" in out and "parity: max |onnxruntime" in out
    assert main(["export", "--ckpt_path", str(tiny_checkpoint), "--out", str(ts_file), "--embeddings"]) == 0
    images = generated_faces(3)
    meta = check_file(onnx_file, tiny_checkpoint, images, embeddings=False)
    assert meta["file_format"] == "onnx" and meta["opset"] >= 17 and meta["backbone"] == "scratch_cnn"
    assert meta["face_crop"] == 1.0 and meta["weights"] == "random" and meta["checkpoint"] == str(tiny_checkpoint)
    assert meta["parity"]["images_from"] == "the checkpoint's test split"  # the synthetic split re-renders
    ts_meta = check_file(ts_file, tiny_checkpoint, images, embeddings=True)
    assert ts_meta["file_format"] == "torchscript" and ts_meta["weights_fingerprint"] == meta["weights_fingerprint"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.onnx", "tiny.onnx.json", "tiny.pt", "tiny.pt.json"]


@pytest.mark.slow
@pytest.mark.parametrize("backbone, embeddings", [("mobilenet_v2", False), ("resnet18", True)])
def test_torchvision_backbones_export_to_onnx(backbone, embeddings, tmp_path):
    """The ops of torchvision models (BatchNorm folded into convolutions, ReLU6, residual adds) export."""
    torch.manual_seed(0)
    model = ft.FaceClassifier(backbone, weights=None, input_size=64, class_names=["a", "b", "c"])
    result = export_model(model, tmp_path / "m.onnx", embeddings=embeddings, face_crop=0.8)
    meta = check_file(result.path, model, generated_faces(3), embeddings)
    assert meta["backbone"] == backbone and meta["input_size"] == 64 and meta["resize_size"] == 73
    assert meta["face_crop"] == 0.8 and meta["checkpoint"] is None and meta["parity"]["images_from"].startswith("generated")


@pytest.fixture(scope="module")
def orl_onnx(orl_probe_checkpoint, tmp_path_factory) -> Path:
    """The ORL probe exported to ONNX (logits), once for this module."""
    return export_checkpoint(orl_probe_checkpoint, tmp_path_factory.mktemp("orl_export") / "orl.onnx").path


@pytest.mark.shared_data
def test_orl_dlib_probe_exports_with_parity_on_orl_faces(orl_probe_checkpoint, orl_onnx, orl_root, tmp_path):
    info = CheckpointInfo.read(orl_probe_checkpoint)
    probes = [load_rgb(orl_root / name / f"{i}.pgm") for name in info.class_names[:4] for i in (1, 9)]
    export_checkpoint(orl_probe_checkpoint, tmp_path / "orl.pt")
    for path in (orl_onnx, tmp_path / "orl.pt"):
        meta = check_file(path, orl_probe_checkpoint, probes, embeddings=False)
        assert meta["parity"]["images_from"] == "the checkpoint's test split" and meta["parity"]["images"] == 8
        assert meta["backbone"] == "dlib_resnet" and meta["weights"] == "FACE_API" and meta["input_size"] == 150


def deploy_program() -> str:
    """The onnxruntime program of docs/deploy.md, exactly as printed there."""
    text = (REPO / "docs" / "deploy.md").read_text()
    found = re.search(r"<!-- deploy-program -->\n```python\n(.*?)```", text, re.S)
    assert found, "docs/deploy.md lost its program"
    return found.group(1)


@pytest.mark.shared_data
def test_deploy_program_names_orl_faces(orl_probe_checkpoint, orl_onnx, orl_root, tmp_path, monkeypatch, capsys):
    """docs/deploy.md's program, given only the .onnx file and its sidecar, names faces as PyTorch does."""
    program = tmp_path / "name_face.py"
    program.write_text(deploy_program())
    assert len([line for line in program.read_text().splitlines() if line.strip()]) <= 18
    model_dir = tmp_path / "model"  # the .onnx file and its sidecar, nothing else
    model_dir.mkdir()
    for path in (orl_onnx, sidecar_path(orl_onnx)):
        (model_dir / path.name).write_bytes(path.read_bytes())
    model = ft.FaceClassifier.load_from_checkpoint(orl_probe_checkpoint).eval()
    test_keys = [key for key, _ in torch.load(orl_probe_checkpoint, weights_only=True)["FaceDataModule"]["manifest"]["test"]]
    for key in test_keys[::4]:  # one held-out image of 4 subjects
        monkeypatch.setattr(sys, "argv", ["name_face.py", str(model_dir / "orl.onnx"), str(orl_root / key)])
        runpy.run_path(str(program), run_name="__main__")
        name, probability = capsys.readouterr().out.split()
        with torch.no_grad():
            probs = model(model.preprocess.eval_transform(1.0)(load_rgb(orl_root / key))[None]).softmax(1)[0]
        assert name == model.class_names[int(probs.argmax())] == key.split("/")[0]
        assert float(probability) == pytest.approx(float(probs.max()), abs=0.005)


# --- bad input and failed checks ---------------------------------------------------------------------
def expect_error(args: list[str], capsys, pattern: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_export_bad_input_is_one_line(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    base = ["export", "--ckpt_path", str(tiny_checkpoint)]
    expect_error([*base, "--out", str(tmp_path / "m.bin")], capsys, r"cannot tell the export format from 'm.bin'")
    expect_error(["export", "--ckpt_path", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "m.onnx")], capsys,
                 r"checkpoint file .*nope.ckpt does not exist")
    expect_error(["export", "--ckpt_path", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "m.onnx")], capsys,
                 r"notes.txt is damaged or not a PyTorch checkpoint: not a zip archive")
    expect_error([*base, "--out", str(tmp_path), "--format", "onnx"], capsys, r"is a folder; give a file name")
    expect_error([*base, "--out", str(tmp_path / "m.tflite"), "--format", "tflite"], capsys,
                 r"--format: 'tflite' is not one of onnx, torchscript")
    expect_error([*base, "--out", str(tmp_path / "m.onnx"), "--face_crop", "1.5"], capsys, r"face_crop must be in \(0, 1\]")
    expect_error([*base, "--out", str(tmp_path / "m.onnx"), "--check_images", str(tmp_path / "none")], capsys,
                 r"image file or folder .*none does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


def test_failed_parity_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    (tmp_path / "m.onnx").write_bytes(b"an earlier export")
    monkeypatch.setattr("facetransfer.export.TOLERANCE", -1.0)  # no difference is small enough
    with pytest.raises(WeightsError, match=r"the onnx export of .* differs from PyTorch by .* was not written"):
        export_checkpoint(tiny_checkpoint, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary file, no sidecar
    assert (tmp_path / "m.onnx").read_bytes() == b"an earlier export"  # the earlier file is untouched


def test_missing_onnx_packages_are_named(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'facetransfer\[export\]'"):
        export_checkpoint(tiny_checkpoint, tmp_path / "m.onnx")
    export_checkpoint(tiny_checkpoint, tmp_path / "m.pt")  # TorchScript needs none of them
    assert json.loads(sidecar_path(tmp_path / "m.pt").read_text())["file_format"] == "torchscript"
