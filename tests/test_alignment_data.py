"""Datasets with alignment: CelebA in the wild with its own landmarks, LFW's original images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facetransfer.data import get_source
from facetransfer.data.aligned import AlignedSource, aligned_source
from facetransfer.data.celeba import CelebASource
from facetransfer.detection import Aligner, LandmarkTable, NoFaceError, get_template
from facetransfer.errors import ConfigError, DataError

from .detection_fakes import ScriptedDetector, blob_centres
from .fakes import make_celeba_tree, make_lfw_tree, shared

HEADER = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"


def _dots(points: list[list[float]], size: tuple[int, int]) -> Image.Image:
    """Black image with a white 5x5 square centred on each (integer) landmark pixel."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    for x, y in points:
        pixels[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] = 255
    return Image.fromarray(pixels)


def make_celeba_wild(root, unlisted: str | None = "000004.jpg"):
    """CelebA's in-the-wild layout: img_celeba/ with dots at the landmarks of list_landmarks_celeba.txt
    (integer pixels, as CelebA gives them), plus the aligned set's landmark file."""
    make_celeba_tree(root, identities=2, per_identity=3)
    (root / "img_align_celeba").rename(root / "img_celeba")
    rows, aligned_rows = [], []
    rng = np.random.default_rng(0)
    for path in sorted((root / "img_celeba").iterdir()):
        scale, dx, dy = rng.uniform(1.2, 2.0), rng.integers(0, 60), rng.integers(0, 40)
        points = [[round(x * scale + dx), round(y * scale + dy)] for x, y in get_template("dlib").points.tolist()]
        size = (int(150 * scale) + 80, int(150 * scale) + 60)
        _dots(points, size).save(path, quality=98)
        if path.name != unlisted:
            rows.append(f"{path.name} " + " ".join(str(v) for p in points for v in p))
        aligned_rows.append(f"{path.name} 69 109 106 113 77 142 73 152 108 154")
    (root / "Anno").mkdir()
    (root / "Anno" / "list_landmarks_celeba.txt").write_text(f"{len(rows)}\n{HEADER}\n" + "\n".join(rows) + "\n")
    (root / "list_landmarks_align_celeba.txt").write_text(f"{len(aligned_rows)}\n{HEADER}\n" + "\n".join(aligned_rows) + "\n")
    return root


def test_celeba_wild_uses_its_own_landmarks(tmp_path):
    root = make_celeba_wild(tmp_path / "celeba")
    source = get_source("celeba", root=str(root), variant="wild")
    records = source.records()
    assert len(records) == 6 and records[0].key == "img_celeba/000001.jpg"
    assert source.init_args() == {"partition": "all", "variant": "wild"}
    aligned = aligned_source(source, "landmarks", "dlib", 150)
    assert isinstance(aligned, AlignedSource) and aligned.aligner.detector is None
    assert aligned.describe()["align"]["landmarks"] == "celeba-wild"
    bad = aligned.find_faceless([r.key for r in records])
    assert bad == [("img_celeba/000004.jpg", f"{root / 'img_celeba' / '000004.jpg'} is not listed in the landmarks "
                    f"celeba-wild ({root / 'Anno' / 'list_landmarks_celeba.txt'})")]
    template = get_template("dlib")
    for record in records:
        if record.key.endswith("000004.jpg"):
            with pytest.raises(NoFaceError, match="is not listed in the landmarks celeba-wild"):
                aligned.open(record.key)
            continue
        chip = aligned.open(record.key)
        centres = blob_centres(torch.from_numpy(np.asarray(chip).copy()).permute(2, 0, 1), template.points)
        assert (centres - template.points).norm(dim=1).max() < 1.5, record.key


def test_celeba_aligned_set_has_its_landmark_file_too(tmp_path):
    root = make_celeba_wild(tmp_path / "celeba")
    (root / "img_celeba").rename(root / "img_align_celeba")
    source = CelebASource(str(root))
    assert source.init_args() == {"partition": "all"}  # unchanged for the default variant
    table = LandmarkTable.from_source(source)
    assert table.name == "celeba-aligned" and len(table) == 6
    assert table.lookup("img_align_celeba/000002.jpg").landmarks[0, 0].tolist() == [69.5, 109.5]


def test_celeba_landmark_errors(tmp_path):
    root = make_celeba_wild(tmp_path / "celeba")
    with pytest.raises(DataError, match=r"no img_align_celeba/ folder under"):
        CelebASource(str(root)).records()
    with pytest.raises(ConfigError, match="unknown CelebA variant 'raw'; known: aligned, wild"):
        CelebASource(str(root), variant="raw")
    lm = root / "Anno" / "list_landmarks_celeba.txt"
    lm.write_text(lm.read_text() + "000009.jpg 1 2 3\n")
    with pytest.raises(DataError, match=r"list_landmarks_celeba.txt:8: expected '<image> x1 y1 ... x5 y5'"):
        CelebASource(str(root), variant="wild").landmark_points()
    lm.unlink()
    with pytest.raises(DataError, match="list_landmarks_celeba.txt not found"):
        CelebASource(str(root), variant="wild").landmark_points()
    with pytest.raises(ConfigError, match="align: landmarks needs a dataset that ships landmarks"):
        aligned_source(get_source("folder", root=str(root / "img_celeba")), "landmarks")


def test_lfw_original_variant_with_alignment(tmp_path):
    root = make_lfw_tree(tmp_path / "lfw", {"Alice_A": 3, "Bob_B": 2}, variant="lfw", size=96)
    detector = ScriptedDetector()
    source = AlignedSource(get_source("lfw", root=str(root), variant="original"), Aligner(detector, "arcface"))
    keys = [r.key for r in source.records()]
    assert keys[0] == "lfw/Alice_A/Alice_A_0001.jpg"
    assert source.find_faceless(keys) == []
    assert source.open(keys[0]).size == (112, 112)
    assert source.describe()["args"]["variant"] == "original"


@pytest.mark.shared_data
def test_lfw_original_images_align_with_mtcnn(mtcnn_weights):
    source = aligned_source(get_source("lfw", root=str(shared("lfw-devtrain")), variant="original"), "mtcnn",
                            cache=None)
    keys = ["lfw/Aaron_Peirsol/Aaron_Peirsol_0002.jpg", "lfw/Tony_Blair/Tony_Blair_0003.jpg"]
    assert source.find_faceless(keys) == []
    for key in keys:
        location = source.aligner.locate(source.path(key), key=key)
        assert location.image_size == (150, 150) and location.score > 0.95
        assert source.open(key).size == (150, 150)
