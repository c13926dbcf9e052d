"""LFW / CelebA / folder layouts, image modes, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facetransfer.data import FaceDataModule, get_source, to_rgb
from facetransfer.errors import ConfigError, DataError
from facetransfer.io.images import load_rgb

from .fakes import make_lfw_tree, write_face


@pytest.mark.parametrize("variant", ["lfw-deepfunneled", "lfw_funneled", "lfw"])
def test_lfw_detects_any_alignment(tmp_path, variant):
    root = make_lfw_tree(tmp_path, {"Ann_A": 3, "Ben_B": 2}, variant=variant)
    recs = get_source("lfw", root=str(root)).records()
    assert [r.identity for r in recs] == ["Ann_A"] * 3 + ["Ben_B"] * 2
    assert recs[0].key == f"{variant}/Ann_A/Ann_A_0001.jpg"


def test_lfw_root_may_be_the_variant_folder(lfw_tree):
    recs = get_source("lfw", root=str(lfw_tree / "lfw-deepfunneled")).records()
    assert len(recs) == 18


def test_lfw_prefers_deepfunneled_and_variant_can_be_chosen(tmp_path):
    make_lfw_tree(tmp_path, {"Ann_A": 2}, variant="lfw")
    make_lfw_tree(tmp_path, {"Ann_A": 3}, variant="lfw-deepfunneled")
    assert len(get_source("lfw", root=str(tmp_path)).records()) == 3
    assert len(get_source("lfw", root=str(tmp_path), variant="original").records()) == 2


def test_lfw_people_lists(lfw_tree, tmp_path):
    (lfw_tree / "peopleDevTrain.txt").write_text("2\nAlice_A\t6\nBob_B\t5\n")
    src = get_source("lfw", root=str(lfw_tree), people="devtrain")
    assert {r.identity for r in src.records()} == {"Alice_A", "Bob_B"}
    with pytest.raises(DataError, match="peopleDevTest.txt"):
        get_source("lfw", root=str(lfw_tree), people="devtest").records()
    (lfw_tree / "peopleDevTrain.txt").write_text("1\nZed_Z\t3\n")
    with pytest.raises(DataError, match="Zed_Z"):
        get_source("lfw", root=str(lfw_tree), people="devtrain").records()


def test_lfw_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        get_source("lfw", root=str(tmp_path / "missing")).records()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no LFW images"):
        get_source("lfw", root=str(tmp_path / "empty")).records()
    with pytest.raises(ConfigError, match="unknown LFW variant 'wavy'"):
        get_source("lfw", root=str(tmp_path), variant="wavy")


def test_celeba_layouts_and_partition(celeba_tree, tmp_path):
    recs = get_source("celeba", root=str(celeba_tree)).records()
    assert len(recs) == 20 and recs[0].identity == "100"
    assert recs[0].key == "img_align_celeba/000001.jpg"
    test_part = get_source("celeba", root=str(celeba_tree), partition="test").records()
    assert {r.identity for r in test_part} == {"103"}
    # torchvision's layout: <root>/celeba/...
    nested = tmp_path / "tv"
    nested.mkdir()
    celeba_tree.rename(nested / "celeba")
    assert len(get_source("celeba", root=str(nested)).records()) == 20


def test_celeba_missing_annotation(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(DataError, match="identity_CelebA.txt not found"):
        get_source("celeba", root=str(tmp_path)).records()


def test_folder_reads_every_format_as_rgb(folder_tree):
    src = get_source("folder", root=str(folder_tree))
    recs = src.records()
    assert {r.key.rsplit(".", 1)[1] for r in recs} == {"jpg", "png", "pgm"}
    for r in recs:
        img = src.open(r.key)
        assert img.mode == "RGB" and img.size == (48, 48)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        get_source("folder", root=str(tmp_path / "nope")).records()
    (tmp_path / "flat").mkdir()
    write_face(tmp_path / "flat" / "a.jpg", 0, 0)
    with pytest.raises(DataError, match="no identity folders"):
        get_source("folder", root=str(tmp_path / "flat")).records()
    with pytest.raises(DataError, match="needs data.root"):
        get_source("folder", root=None).records()


def test_unknown_dataset_lists_known():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'; known: celeba, folder, lfw, synthetic"):
        FaceDataModule("imagenet")


def test_dataset_args_a_source_does_not_take_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset 'folder' does not take dataset_args 'num_identities'; it takes: none"):
        FaceDataModule("folder", root=str(tmp_path), dataset_args={"num_identities": 4})
    with pytest.raises(ConfigError, match=r"dataset 'lfw' does not take dataset_args 'split'; it takes: variant, people"):
        get_source("lfw", root=str(tmp_path), split="train")


def test_to_rgb_modes():
    assert to_rgb(Image.new("L", (2, 2), 100)).getpixel((0, 0)) == (100, 100, 100)
    assert to_rgb(Image.new("RGBA", (2, 2), (200, 10, 10, 0))).getpixel((0, 0)) == (0, 0, 0)  # transparent -> black
    assert to_rgb(Image.new("RGBA", (2, 2), (200, 10, 10, 255))).getpixel((0, 0)) == (200, 10, 10)
    assert to_rgb(Image.new("CMYK", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
    sixteen = Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16))
    assert to_rgb(sixteen).getpixel((0, 0))[0] in (127, 128)  # scaled, not clipped to 255
    assert to_rgb(Image.new("P", (2, 2))).mode == "RGB"


def test_load_rgb_names_bad_file(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*x\.jpg"):
        load_rgb(bad)


def test_a_phone_photo_stored_sideways_is_read_upright_on_every_path(tmp_path):
    """EXIF Orientation 6 (stored turned, shown after a quarter turn): training, predict, gallery and verify
    see the same pixels as the upright file."""
    from torchvision.transforms.functional import pil_to_tensor

    from facetransfer.data.tensor_store import TensorStore, _turned_by_exif
    from facetransfer.features import ImageFiles
    from facetransfer.models import get_backbone
    from facetransfer.verification import Embedder

    upright = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8))  # 80 wide
    for person in ("upright", "phone"):
        (tmp_path / person).mkdir()
    upright.save(tmp_path / "upright" / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone" / "a.png", exif=exif)
    want = pil_to_tensor(upright)

    source = get_source("folder", tmp_path)
    assert torch.equal(pil_to_tensor(source.open("phone/a.png")), want)  # training, test
    store = TensorStore.build(source, [("phone/a.png", 0), ("upright/a.png", 1)], side=32)
    assert torch.equal(store.images[0], store.images[1])  # the decoded store of the training loop
    assert torch.equal(ImageFiles([tmp_path / "phone" / "a.png"], pil_to_tensor)[0][0], want)  # predict, export
    embedder = Embedder(get_backbone("scratch_cnn", widths=[8, 16], fc_features=16, input_size=32))  # gallery, verify
    assert torch.equal(embedder.preprocess(tmp_path / "phone" / "a.png"), embedder.preprocess(upright))
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif)
    upright.save(tmp_path / "a.jpg")
    jpegs = [torch.frombuffer(bytearray((tmp_path / n).read_bytes()), dtype=torch.uint8) for n in ("phone.jpg", "a.jpg")]
    assert [_turned_by_exif(b) for b in jpegs] == [True, False]  # the GPU decoder leaves turned JPEGs to PIL
