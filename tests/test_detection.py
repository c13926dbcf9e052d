"""Face detectors: the registry, MTCNN's offline weights, and MTCNN on real LFW faces."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from facetransfer.cli import main
from facetransfer.detection import (
    Detections,
    FaceDetector,
    get_detector,
    list_detectors,
    register_detector,
)
from facetransfer.detection import registry as detector_registry
from facetransfer.detection.mtcnn import MTCNN
from facetransfer.detection.mtcnn_weights import (
    MTCNN_FILES,
    WHEEL_NAME,
    cache_filename,
    import_mtcnn_wheel,
)
from facetransfer.errors import ConfigError, DataError, WeightsError

from .fakes import REPO, shared

#: where MTCNN puts the five landmarks on LFW's deep-funneled 250 px images: the mean over the
#: 3,443 images of pairsDevTrain.txt (left eye, right eye, nose, left and right mouth corner;
#: standard deviation 2.4-6.5 px)
DEEPFUNNELED_LAYOUT = torch.tensor([[104.5, 113.0], [146.7, 112.0], [125.9, 137.1], [107.6, 159.0], [145.1, 158.2]])
LFW_FACES = ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg",
             "Serena_Williams/Serena_Williams_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg",
             "Colin_Powell/Colin_Powell_0001.jpg"]


# --- registry ------------------------------------------------------------------------------------
class FixedDetector(FaceDetector):
    """Returns the same face (relative to the image size) for every image."""

    name = "fixed"

    def detect(self, images):
        out = []
        for im in images:
            w, h = im.size
            points = torch.tensor([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.7], [0.62, 0.7]]) * torch.tensor([w, h])
            out.append(Detections(torch.tensor([[0.2 * w, 0.2 * h, 0.8 * w, 0.9 * h]]), points[None], torch.ones(1)))
        return out


def test_registry_lists_builds_and_rejects():
    assert "mtcnn" in list_detectors()
    with pytest.raises(ConfigError, match=r"unknown face detector 'retina'; known: .*mtcnn"):
        get_detector("retina")
    with pytest.raises(ConfigError, match=r"face detector 'mtcnn': .*'min_face'.*it accepts: weights, device, min_face_size"):
        get_detector("mtcnn", weights=None, min_face=20)
    with pytest.raises(ConfigError, match="min_face_fraction must be in"):
        get_detector("mtcnn", weights=None, min_face_fraction=2)


def test_register_a_detector(monkeypatch):
    monkeypatch.setattr(detector_registry.DETECTORS, "builders", dict(detector_registry.DETECTORS.builders))

    @register_detector("fixed_for_test")
    def fixed_for_test(weights=None, device=None):
        return FixedDetector()

    assert isinstance(get_detector("fixed_for_test"), FixedDetector)
    with pytest.raises(ValueError, match="already registered"):
        register_detector("fixed_for_test")(lambda weights=None, device=None: FixedDetector())



PLUGIN = """
import torch
from facetransfer.detection import Detections, FaceDetector

class CornerDetector(FaceDetector):
    name = "corner"

    def detect(self, images):
        return [Detections.empty() for _ in images]

def corner(weights=None, device=None):
    return CornerDetector()
"""


def test_entry_point_plugins_are_found(tmp_path, monkeypatch, caplog):
    """A tiny installed distribution declaring two facetransfer.detectors entry points, one broken."""
    (tmp_path / "corner_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "corner_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: corner-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[facetransfer.detectors]\ncorner = corner_plugin:corner\nbroken = corner_plugin:missing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(detector_registry.DETECTORS, "builders", dict(detector_registry.DETECTORS.builders))
    monkeypatch.setattr(detector_registry.DETECTORS, "plugins_loaded", False)
    monkeypatch.delitem(sys.modules, "corner_plugin", raising=False)
    assert "corner" in list_detectors() and "broken" not in list_detectors() and "mtcnn" in list_detectors()
    assert "could not load facetransfer.detectors plug-in 'broken'" in caplog.text
    assert get_detector("corner").detect([Image.new("RGB", (8, 8))])[0].boxes.shape == (0, 4)


def test_builder_must_return_a_face_detector(monkeypatch):
    monkeypatch.setattr(detector_registry.DETECTORS, "builders", dict(detector_registry.DETECTORS.builders))
    register_detector("not_a_detector")(lambda weights=None, device=None: object())
    with pytest.raises(ConfigError, match="returned object, expected a facetransfer FaceDetector"):
        get_detector("not_a_detector")


# --- weights -------------------------------------------------------------------------------------
def test_missing_weights_name_the_import_command():
    with pytest.raises(WeightsError) as err:
        get_detector("mtcnn")
    msg = str(err.value)
    assert "mtcnn_pnet-a2a71925.pt" in msg and f"facetransfer weights import vendor/{WHEEL_NAME}" in msg
    assert "pip download --no-deps facenet-pytorch==2.6.0" in msg


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_wheel_import_checks_hashes(tmp_path, isolated_torch_home):
    wrong = _fake_wheel(tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl",
                        {member: b"not weights" for member, _, _ in MTCNN_FILES.values()})
    with pytest.raises(WeightsError, match=r"facenet_pytorch/data/pnet.pt has the wrong hash: sha256 .* expected a2a71925"):
        import_mtcnn_wheel(wrong)
    incomplete = _fake_wheel(tmp_path / "facenet_pytorch-2.5.0-py3-none-any.whl", {"facenet_pytorch/__init__.py": b""})
    with pytest.raises(WeightsError, match="holds no facenet_pytorch/data/pnet.pt"):
        import_mtcnn_wheel(incomplete)
    (tmp_path / "facenet_pytorch-0-py3-none-any.whl").write_bytes(b"not a zip")
    assert main(["weights", "import", str(tmp_path / "facenet_pytorch-0-py3-none-any.whl")]) == 2
    assert not isolated_torch_home.exists() or not any(isolated_torch_home.iterdir())


def test_wheel_import_places_verified_files(tmp_path, isolated_torch_home, capsys):
    """From the real wheel (``make weights`` downloads it to vendor/), or from the installed files."""
    wheel = REPO / "vendor" / WHEEL_NAME
    if not wheel.is_file():
        from .fakes import REAL_CHECKPOINTS

        real = {net: REAL_CHECKPOINTS / cache_filename(net) for net in MTCNN_FILES}
        if not all(p.is_file() for p in real.values()):
            pytest.skip(f"neither {wheel} nor the imported MTCNN weights are present (run `make weights`)")
        wheel = _fake_wheel(tmp_path / WHEEL_NAME, {MTCNN_FILES[n][0]: p.read_bytes() for n, p in real.items()})
    assert main(["weights", "import", str(wheel)]) == 0
    assert "imported" in capsys.readouterr().out
    for net, (_, sha, size) in MTCNN_FILES.items():
        cached = isolated_torch_home / cache_filename(net)
        assert cached.stat().st_size == size and hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert main(["weights", "list"]) == 0
    assert "mtcnn_onet-165bfbe4.pt\tfacenet-pytorch 2.6.0 wheel (MIT): MTCNN O-Net weights" in capsys.readouterr().out
    assert isinstance(get_detector("mtcnn"), MTCNN)


# --- the cascade -----------------------------------------------------------------------------------
def test_random_weights_run_on_any_input_kind():
    detector = MTCNN(weights=None, thresholds=(0.0, 0.0, 0.0))  # accept everything: every stage runs
    images = [Image.new("RGB", (64, 48), (90, 120, 150)), torch.randint(0, 255, (1, 40, 40), dtype=torch.uint8),
              Image.new("L", (11, 11))]
    faces = detector.detect(images)
    assert len(faces) == 3 and len(faces[2]) == 0  # smaller than P-Net's 12 px window
    for f in faces:
        assert f.boxes.shape[1:] == (4,) and f.landmarks.shape[1:] == (5, 2) and f.scores.dtype == torch.float32
        assert bool((f.scores[:-1] >= f.scores[1:]).all())  # best first
    with pytest.raises(DataError, match="must be uint8"):
        detector.detect([torch.zeros(3, 20, 20)])
    with pytest.raises(DataError, match="cannot detect faces in a str"):
        detector.detect(["photo.jpg"])


def test_pyramid_follows_the_minimum_face_size():
    detector = MTCNN(weights=None)
    assert detector.pyramid_scales(250, 250)[0] == pytest.approx(12 / 25)  # a tenth of 250 px
    assert detector.pyramid_scales(100, 100)[0] == pytest.approx(12 / 20)  # never below 20 px
    assert MTCNN(weights=None, min_face_fraction=0.0).pyramid_scales(1000, 800)[0] == pytest.approx(12 / 20)
    assert detector.pyramid_scales(10, 10) == []
    assert detector.cache_id() != MTCNN(weights=None, min_face_fraction=0.2).cache_id()


def _lfw(variant: str, key: str) -> Image.Image:
    return Image.open(shared("lfw-devtrain", variant, key)).convert("RGB")


@pytest.mark.shared_data
def test_mtcnn_finds_lfw_faces_in_the_deepfunneled_layout(mtcnn_weights):
    detector = get_detector("mtcnn")
    found = detector.detect([_lfw("lfw-deepfunneled", k) for k in LFW_FACES])
    for key, faces in zip(LFW_FACES, found):
        assert len(faces) >= 1 and faces.scores[0] > 0.95, key
        error = (faces.landmarks[0] - DEEPFUNNELED_LAYOUT).norm(dim=1)
        assert error.max() < 14, (key, faces.landmarks[0])
        box = faces.boxes[0]
        assert box[0] < DEEPFUNNELED_LAYOUT[:, 0].min() and box[2] > DEEPFUNNELED_LAYOUT[:, 0].max()


@pytest.mark.shared_data
@pytest.mark.parametrize("angle, scale", [(-30, 1.0), (30, 0.6), (15, 1.6), (0, 0.45)])
def test_mtcnn_landmarks_follow_rotation_and_scale(mtcnn_weights, angle, scale):
    """Rotate and scale a real face: the landmarks move with it (within a few pixels)."""
    detector = get_detector("mtcnn")
    image = _lfw("lfw-deepfunneled", LFW_FACES[0])
    reference = detector.detect([image])[0].landmarks[0]
    side = round(250 * scale)
    moved = image.resize((side, side), Image.Resampling.BICUBIC).rotate(angle, Image.Resampling.BICUBIC)
    faces = detector.detect([moved])[0]
    assert len(faces) >= 1
    centre = torch.tensor([side / 2, side / 2])
    theta = torch.tensor(-angle * torch.pi / 180)  # PIL rotates counter-clockwise on screen (y down)
    rotation = torch.stack([torch.stack([theta.cos(), -theta.sin()]), torch.stack([theta.sin(), theta.cos()])])
    expected = (reference * scale - centre) @ rotation.T + centre
    assert (faces.landmarks[0] - expected).norm(dim=1).max() < 4 + 4 * scale, faces.landmarks[0]


@pytest.mark.shared_data
def test_large_photo_is_detected_on_a_reduced_copy(mtcnn_weights):
    """A face in a 3000x2000 photo: found through the max_side copy, coordinates in full resolution."""
    detector = get_detector("mtcnn")
    face = _lfw("lfw-deepfunneled", LFW_FACES[1])
    reference = detector.detect([face])[0].landmarks[0]
    photo = Image.new("RGB", (3000, 2000), (40, 60, 40))
    photo.paste(face.resize((1000, 1000), Image.Resampling.BICUBIC), (1200, 500))
    for kind in (photo, torch.from_numpy(__import__("numpy").asarray(photo).copy()).permute(2, 0, 1)):
        faces = detector.detect([kind])[0]
        assert len(faces) >= 1
        expected = reference * 4 + torch.tensor([1200.0, 500.0])
        assert (faces.landmarks[0] - expected).norm(dim=1).max() < 30, faces.landmarks[0]


@pytest.mark.shared_data
def test_batched_and_single_detection_agree(mtcnn_weights):
    detector = get_detector("mtcnn")
    images = [_lfw("lfw-deepfunneled", k) for k in LFW_FACES[:3]] + [_lfw("lfw", LFW_FACES[3])]  # two sizes
    together = detector.detect(images)
    for image, batched in zip(images, together):
        alone = detector.detect(image)[0]
        assert len(alone) == len(batched)
        assert torch.allclose(alone.landmarks, batched.landmarks, atol=1e-2)


def test_detections_round_trip_and_validate():
    faces = Detections(torch.tensor([[1.0, 2.0, 30.0, 40.0]]), torch.arange(10.0).reshape(1, 5, 2), torch.tensor([0.9]))
    again = Detections.from_dict(faces.to_dict())
    assert torch.equal(again.boxes, faces.boxes) and torch.equal(again.landmarks, faces.landmarks)
    assert len(Detections.from_dict(Detections.empty().to_dict())) == 0
    with pytest.raises(ValueError, match="inconsistent detections"):
        Detections(torch.zeros(2, 4), torch.zeros(1, 5, 2), torch.zeros(2))
    assert torch.equal(faces.scaled(2.0).boxes, faces.boxes * 2)


def test_weights_command_knows_mtcnn_files_in_a_fresh_process(mtcnn_weights):
    """`facetransfer weights list/import` register the MTCNN files without importing facetransfer.detection first."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "facetransfer", "weights", "list"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "mtcnn_pnet-a2a71925.pt\tfacenet-pytorch 2.6.0 wheel (MIT): MTCNN P-Net weights" in out.stdout
