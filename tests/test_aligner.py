"""The Aligner: detection once per image content (on-disk cache), face policies, no-face and bad-file
handling, AlignedSource, and ``facetransfer align`` -- with a scripted detector, and with MTCNN on
real LFW faces (the acceptance list of bad inputs)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facetransfer.cli import main
from facetransfer.data import FolderSource
from facetransfer.data.aligned import AlignedSource, aligned_source
from facetransfer.detection import (
    Aligner,
    Detections,
    LandmarkCache,
    NoFaceError,
    register_detector,
)
from facetransfer.detection import registry as detector_registry
from facetransfer.detection.transform import similarity_transform, transform_points
from facetransfer.errors import ConfigError, DataError

from .detection_fakes import ScriptedDetector, noise_image
from .fakes import shared


@pytest.fixture
def scripted(monkeypatch):
    """A ScriptedDetector registered as ``scripted`` (the registry is restored afterwards)."""
    monkeypatch.setattr(detector_registry.DETECTORS, "builders", dict(detector_registry.DETECTORS.builders))
    detector = ScriptedDetector()
    register_detector("scripted")(lambda weights=None, device=None: detector)
    return detector


def test_detects_once_per_content_across_objects_and_copies(tmp_path, scripted):
    a = noise_image(tmp_path / "a.jpg")
    Aligner(scripted, cache=tmp_path / "lm.sqlite").align(a)
    assert scripted.images_seen == 1
    shutil.copy(a, tmp_path / "renamed.jpg")
    again = Aligner(scripted, cache=tmp_path / "lm.sqlite")  # a new process would see the same file
    again.align(tmp_path / "renamed.jpg")
    again.align(a)
    assert scripted.images_seen == 1
    noise_image(a, seed=1)  # new content under the old name: detected again
    again.align(a)
    assert scripted.images_seen == 2
    other_settings = ScriptedDetector(offset=1.0)  # other detector settings: other cache id
    Aligner(other_settings, cache=tmp_path / "lm.sqlite").align(tmp_path / "renamed.jpg")
    assert other_settings.images_seen == 1
    assert len(LandmarkCache(tmp_path / "lm.sqlite")) == 3


def test_default_cache_lives_in_the_cache_dir(tmp_path, scripted, isolated_landmark_cache):
    Aligner(scripted).align(noise_image(tmp_path / "a.jpg"))
    assert (isolated_landmark_cache / "landmarks.sqlite").is_file()
    assert len(LandmarkCache(isolated_landmark_cache / "landmarks.sqlite")) == 1
    memory_only = Aligner(ScriptedDetector(), cache=None)
    memory_only.align(tmp_path / "a.jpg")
    memory_only.align(tmp_path / "a.jpg")
    assert memory_only.detector.images_seen == 1


def test_unwritable_cache_is_one_clear_error(tmp_path, scripted):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"cannot open the landmark cache .*FACETRANSFER_CACHE_DIR"):
        Aligner(scripted, cache=blocker / "lm.sqlite").align(noise_image(tmp_path / "a.jpg"))


def test_chip_puts_the_landmarks_on_the_template(tmp_path, scripted):
    image = noise_image(tmp_path / "a.png", size=(300, 300))
    aligner = Aligner(scripted, template="dlib", cache=None)
    chip = aligner.align(image)
    assert chip.size == (150, 150) and chip.mode == "RGB"
    # the scripted face is the template scaled by 2: the chip is the image downscaled 2x
    expected = Image.open(image).resize((150, 150), Image.Resampling.BILINEAR, reducing_gap=None)
    diff = np.abs(np.asarray(chip, dtype=float) - np.asarray(expected, dtype=float)).mean()
    assert diff < 40  # noise resampled two ways; a misplaced chip differs by ~85
    location = aligner.locate(image)
    assert location.faces == 1 and location.image_size == (300, 300)
    assert Aligner(scripted, template="arcface", size=64, cache=None).align(image).size == (64, 64)


def test_policies_for_several_faces(tmp_path, scripted):
    group = noise_image(tmp_path / "group.jpg", size=(200, 200))
    central = Aligner(scripted, cache=None).locate(group)
    assert central.faces == 2 and central.index == 1  # default largest_central: the centred face
    largest = Aligner(scripted, pick="largest", cache=None).locate(group)
    assert largest.index == 0
    assert Aligner(scripted, pick="central", cache=None).locate(group).index == 1
    with pytest.raises(ConfigError, match="unknown face pick policy 'first'; known: largest_central, largest, central"):
        Aligner(scripted, pick="first")


def test_no_face_and_bad_files_raise_data_errors(tmp_path, scripted):
    aligner = Aligner(scripted, cache=None)
    flat = tmp_path / "flat.png"
    Image.new("RGB", (80, 80), (128, 128, 128)).save(flat)
    with pytest.raises(NoFaceError, match=r"no face found in .*flat.png \(detector scripted-v1-"):
        aligner.align(flat)
    assert issubclass(NoFaceError, DataError)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*broken.jpg"):
        aligner.align(tmp_path / "broken.jpg")
    with pytest.raises(DataError, match="does not exist"):
        aligner.align(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        aligner.align(tmp_path / "empty.jpg")
    with pytest.raises(DataError, match="cannot align a int"):
        aligner.align(3)


def test_in_memory_images_and_tensors(scripted):
    aligner = Aligner(scripted, cache=None)
    rng = np.random.default_rng(0)
    pil = Image.fromarray(rng.integers(0, 255, (90, 90, 3), dtype=np.uint8))
    assert aligner.align(pil).size == (150, 150)
    tensor = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    assert np.array_equal(np.asarray(aligner.align(tensor)), np.asarray(aligner.align(pil)))
    assert aligner.align(pil.convert("L")).mode == "RGB"


def test_exif_orientation_is_applied(tmp_path, scripted):
    rng = np.random.default_rng(0)
    upright = Image.fromarray(rng.integers(0, 255, (100, 160, 3), dtype=np.uint8))  # 160 wide, 100 high
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after a 90 degree turn
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif)
    assert Aligner(scripted, cache=None).locate(tmp_path / "phone.jpg").image_size == (160, 100)


def test_prepare_and_align_files_batch_and_keep_order(tmp_path, scripted):
    paths = [noise_image(tmp_path / f"{i}.jpg", seed=i) for i in range(7)]
    Image.new("RGB", (50, 50)).save(tmp_path / "flat.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    shutil.copy(paths[0], tmp_path / "dup.jpg")
    files = [*paths, tmp_path / "flat.jpg", tmp_path / "bad.jpg", tmp_path / "dup.jpg"]
    aligner = Aligner(scripted, cache=None, batch_size=3)
    prepared = aligner.prepare(files, progress=True)
    assert scripted.images_seen == 8  # the duplicate content was detected once
    assert prepared.faceless() == [str(tmp_path / "flat.jpg")]
    assert list(prepared.unreadable) == [str(tmp_path / "bad.jpg")]
    results = list(aligner.align_files(files))
    assert scripted.images_seen == 8  # align_files reused the detections
    assert [r.path for r in results] == [str(f) for f in files]
    assert [r.image is None for r in results] == [False] * 7 + [True, True, False]
    assert isinstance(results[7].error, NoFaceError) and "cannot read image" in str(results[8].error)
    single = aligner.align(paths[3])
    assert np.array_equal(np.asarray(single), np.asarray(results[3].image))


def test_aligned_source_wraps_any_source(folder_tree, scripted):
    Image.new("RGB", (48, 48), (9, 9, 9)).save(folder_tree / "person_0" / "blank.png")
    source = AlignedSource(FolderSource(folder_tree), Aligner(scripted, template="arcface"))
    records = source.records()
    assert records == FolderSource(folder_tree).records()
    assert source.describe()["dataset"] == "folder" and source.describe()["align"]["template"] == "arcface"
    assert source.describe()["align"]["detector"].startswith("scripted-v1-")
    faceless = source.find_faceless([r.key for r in records])
    assert faceless == [("person_0/blank.png", f"no face found in {folder_tree / 'person_0' / 'blank.png'} "
                         f"(detector {scripted.cache_id()})")]
    seen = scripted.images_seen
    chip = source.open(records[1].key)
    assert chip.size == (112, 112) and scripted.images_seen == seen  # prepared: open only warps
    with pytest.raises(NoFaceError):
        source.open("person_0/blank.png")


def test_aligned_source_factory(folder_tree, scripted):
    plain = FolderSource(folder_tree)
    assert aligned_source(plain, "none") is plain
    assert isinstance(aligned_source(plain, "scripted", "arcface", 96), AlignedSource)
    with pytest.raises(ConfigError, match="align: landmarks needs a dataset that ships landmarks"):
        aligned_source(plain, "landmarks")
    with pytest.raises(ConfigError, match="unknown face detector 'viola'"):
        aligned_source(plain, "viola")


def test_aligned_source_over_generated_images(scripted):
    from facetransfer.data import get_source

    source = AlignedSource(get_source("synthetic", root=None, num_identities=3, images_per_identity=2),
                           Aligner(scripted, cache=None))
    keys = [r.key for r in source.records()]
    assert source.find_faceless(keys) == []
    assert source.open(keys[0]).size == (150, 150)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_align_command_layout_and_csvs(tmp_path, scripted, capsys):
    src = tmp_path / "photos"
    noise_image(src / "alice" / "1.jpg")
    noise_image(src / "alice" / "2.png", seed=2, mode="L")
    noise_image(src / "bob" / "1.jpg", size=(200, 200), seed=3)
    Image.new("RGB", (64, 64), "white").save(src / "bob" / "wall.jpg")
    (src / "bob" / "broken.jpg").write_bytes(b"garbage")
    (src / "notes.txt").write_text("not an image")
    dst = tmp_path / "chips"
    assert main(["align", str(src), str(dst), "--detector", "scripted", "--template", "arcface", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "aligned 3 of 5 images" in out and "2 without a chip" in out
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.*") if p.suffix != ".csv") == [
        "alice/1.jpg", "alice/2.png", "bob/1.jpg"]
    assert Image.open(dst / "alice" / "2.png").size == (112, 112)
    rows = {r["key"]: r for r in _read_csv(dst / "landmarks.csv")}
    assert set(rows) == {"alice/1.jpg", "alice/2.png", "bob/1.jpg"}
    assert rows["bob/1.jpg"]["faces"] == "2" and rows["bob/1.jpg"]["picked"] == "1"
    assert float(rows["alice/1.jpg"]["left_eye_x"]) == pytest.approx(46.9 * 120 / 150, abs=0.01)
    missing = {r["key"]: r["reason"] for r in _read_csv(dst / "no_face.csv")}
    assert set(missing) == {"bob/wall.jpg", "bob/broken.jpg"}
    assert missing["bob/wall.jpg"].startswith("no face found") and "cannot read image" in missing["bob/broken.jpg"]


def test_align_command_bad_arguments(tmp_path, capsys):
    assert main(["align", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "facetransfer: error: source folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["align", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no image files under" in capsys.readouterr().err
    assert main(["align", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    assert "DST must differ from SRC" in capsys.readouterr().err
    assert main(["align", str(tmp_path / "empty"), str(tmp_path / "out"), "--template", "x"]) == 2


def test_align_command_without_mtcnn_weights_is_one_error(tmp_path, capsys):
    noise_image(tmp_path / "src" / "a" / "1.jpg")
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "MTCNN weights" in err and "facetransfer weights import" in err
    assert len(err.strip().splitlines()) == 1


# --- real faces ----------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_bad_inputs_follow_the_documented_policy(tmp_path, mtcnn_weights, capsys):
    """No face, a 4-face group photo, a 6000x4000 photo, a grey image, a corrupt file: one line each."""
    lfw = shared("lfw-devtrain", "lfw-deepfunneled")
    faces = [Image.open(lfw / name / f"{name}_0001.jpg").convert("RGB")
             for name in ("Aaron_Peirsol", "George_W_Bush", "Serena_Williams", "Tony_Blair")]
    src = tmp_path / "photos" / "mixed"
    src.mkdir(parents=True)
    Image.new("RGB", (400, 300), (70, 110, 160)).save(src / "sky.jpg")  # no face
    group = Image.new("RGB", (1000, 1000), (30, 30, 30))
    for i, (face, side) in enumerate(zip(faces, (250, 250, 250, 320))):  # Tony Blair largest, bottom right
        group.paste(face.resize((side, side)), (80 + (i % 2) * 500, 80 + (i // 2) * 500))
    group.save(src / "group.jpg")
    big = Image.new("RGB", (6000, 4000), (200, 190, 170))
    big.paste(faces[1].resize((1500, 1500)), (2500, 1200))
    big.save(src / "big.jpg", quality=90)
    faces[2].convert("L").save(src / "grey.jpg")
    data = (lfw / "Tony_Blair" / "Tony_Blair_0002.jpg").read_bytes()
    (src / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    dst = tmp_path / "chips"
    assert main(["align", str(tmp_path / "photos"), str(dst), "--no-progress"]) == 0
    rows = {r["key"]: r for r in _read_csv(dst / "landmarks.csv")}
    missing = {r["key"]: r["reason"] for r in _read_csv(dst / "no_face.csv")}
    assert set(rows) | set(missing) == {f"mixed/{n}.jpg" for n in ("sky", "group", "big", "grey", "corrupt")}
    assert not set(rows) & set(missing)  # each file in exactly one list
    assert missing["mixed/sky.jpg"].startswith("no face found in")
    assert int(rows["mixed/group.jpg"]["faces"]) >= 4  # the four, and maybe a face in their backgrounds
    picked = rows["mixed/group.jpg"]
    assert float(picked["left_eye_x"]) > 580 and float(picked["left_eye_y"]) > 580  # the largest face
    assert rows["mixed/big.jpg"]["image_width"] == "6000"
    assert 2500 < float(rows["mixed/big.jpg"]["nose_x"]) < 4000
    assert Image.open(dst / "mixed" / "big.jpg").size == (150, 150)
    assert Image.open(dst / "mixed" / "grey.jpg").mode == "RGB"
    assert "corrupt.jpg" in missing["mixed/corrupt.jpg"] and "mixed/corrupt.jpg" not in rows
    assert "aligned 3 of 5 images" in capsys.readouterr().out


@pytest.mark.shared_data
def test_real_chips_put_the_face_where_the_transform_says(mtcnn_weights):
    """Detect again on the chip: the landmarks are where the fitted transform sends the original ones."""
    image = shared("lfw-devtrain", "lfw", "George_W_Bush", "George_W_Bush_0002.jpg")
    aligner = Aligner("mtcnn", "dlib", size=300, cache=None)
    original = aligner.locate(image).landmarks[None]
    expected = transform_points(similarity_transform(original, aligner.template.points), original)[0]
    found = aligner.detector.detect([aligner.align(image)])[0]
    assert (found.landmarks[0] - expected).norm(dim=1).max() < 6
    assert (expected[:2] - aligner.template.points[:2]).norm(dim=1).max() < 6  # the eyes land on the template


def test_chips_are_identical_from_fresh_and_cached_detections(tmp_path):
    """Detections are rounded as the cache stores them, so a cache hit gives the very same chip."""

    class Subpixel(ScriptedDetector):
        def detect(self, images):
            return [Detections(f.boxes, f.landmarks + 0.123456, f.scores) for f in super().detect(images)]

    image = noise_image(tmp_path / "a.png", size=(180, 180))
    fresh = Aligner(Subpixel(), cache=tmp_path / "lm.sqlite").align(image)
    cached_aligner = Aligner(Subpixel(), cache=tmp_path / "lm.sqlite")
    cached = cached_aligner.align(image)
    assert cached_aligner.detector.images_seen == 0
    assert np.array_equal(np.asarray(fresh), np.asarray(cached))


def test_dataloader_workers_of_an_accelerator_aligner_work_on_the_cpu(folder_tree, scripted):
    """A CUDA aligner's forked DataLoader workers cannot touch CUDA: they detect and warp with a CPU twin.
    ("meta" stands in for an accelerator: anything but the CPU fails if used.)"""
    import pickle

    from torch.utils.data import DataLoader

    source = AlignedSource(FolderSource(folder_tree), Aligner(scripted, cache=None, device="meta"))
    keys = [r.key for r in source.records()][:4]
    loader = DataLoader(keys, batch_size=2, num_workers=1, collate_fn=lambda ks: [source.open(k).size for k in ks],
                        multiprocessing_context="fork")
    assert [size for batch in loader for size in batch] == [(150, 150)] * 4
    spawned = pickle.loads(pickle.dumps(source.aligner))  # what a spawned worker receives
    assert spawned.device.type == "cpu" and spawned.detector is not None
    assert spawned.align(folder_tree / keys[0]).size == (150, 150)
