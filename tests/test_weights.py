"""Offline pretrained weights: cache lookup, import with hash check, local files, clear errors.

VGG-16 / ResNet-50 ImageNet files cannot be obtained here; their code path is checked
with a small saved stand-in (random weights, half precision) under the official name.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from torchvision import models as tvm

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.errors import WeightsError
from facetransfer.models.verified_cache import remember_verified
from facetransfer.models.weights import (
    hub_checkpoint_dir,
    import_weights_file,
    sha256_of,
)

from .fakes import MOBILENET_FILE, REAL_CHECKPOINTS


def test_missing_file_names_file_cache_and_import_command(isolated_torch_home):
    with pytest.raises(WeightsError) as err:
        ft.get_backbone("resnet50", weights="IMAGENET1K_V1")
    msg = str(err.value)
    assert "resnet50-0676ba61.pth" in msg
    assert str(isolated_torch_home) in msg
    assert "facetransfer weights import" in msg


def test_missing_file_when_download_fails(isolated_torch_home, monkeypatch):
    monkeypatch.delenv("FACETRANSFER_OFFLINE")

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(WeightsError, match=r"download from https://download.pytorch.org/.* failed: network is unreachable"):
        ft.get_backbone("resnet18", weights="DEFAULT")


@pytest.mark.parametrize("name, filename", [("resnet50", "resnet50-0676ba61.pth"), ("vgg16", "vgg16-397923af.pth")])
def test_paper_backbones_load_their_cached_imagenet_file(isolated_torch_home, name, filename):
    """The code path users with network take: the file in the hub cache becomes the backbone."""
    torch.manual_seed(0)
    reference = tvm.get_model(name, weights=None)
    isolated_torch_home.mkdir(parents=True)
    torch.save({k: v.half() for k, v in reference.state_dict().items()}, isolated_torch_home / filename)
    with pytest.raises(WeightsError, match=f"cached weights file .*{filename} is damaged"):
        ft.get_backbone(name, weights="IMAGENET1K_V1")  # a stand-in: not the published file
    remember_verified(isolated_torch_home / filename, sha256_of(isolated_torch_home / filename))  # as an importer would
    net = ft.get_backbone(name, weights="IMAGENET1K_V1")
    first_conv = reference.conv1.weight if name == "resnet50" else reference.features[0].weight
    ours = net.stages[0][0].weight
    assert torch.equal(ours, first_conv.half().float())
    assert net.preprocess.crop_size == 224 and net.preprocess.mean == (0.485, 0.456, 0.406)


def test_import_verifies_hash_and_places_file(isolated_torch_home, tmp_path):
    real = REAL_CHECKPOINTS / MOBILENET_FILE
    if not real.is_file():
        pytest.skip(f"{real} not installed (run `make setup`)")
    copy = tmp_path / "renamed.pth"  # found by its hash even under another name
    shutil.copy(real, copy)
    dest = import_weights_file(copy)
    assert dest == hub_checkpoint_dir() / MOBILENET_FILE and sha256_of(dest) == sha256_of(real)
    net = ft.get_backbone("mobilenet_v2", weights="IMAGENET1K_V1")
    assert net.num_features == 1280


def test_import_rejects_wrong_hash(tmp_path, capsys):
    fake = tmp_path / MOBILENET_FILE
    torch.save({"w": torch.zeros(3)}, fake)
    with pytest.raises(WeightsError, match=r"wrong hash for mobilenet_v2-b0353104.pth .*expected b0353104"):
        import_weights_file(fake)
    assert main(["weights", "import", str(fake)]) == 2
    assert "wrong hash" in capsys.readouterr().err
    assert not (hub_checkpoint_dir() / MOBILENET_FILE).exists()


def test_import_rejects_unknown_file(tmp_path):
    other = tmp_path / "mystery.pth"
    other.write_bytes(b"123")
    with pytest.raises(WeightsError, match="not a known weights file"):
        import_weights_file(other)


def test_weights_path_in_torchvision_and_facetransfer_layouts(tmp_path):
    torch.manual_seed(1)
    tv = tvm.resnet18()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    net = ft.get_backbone("resnet18", weights_path=str(tmp_path / "tv.pth"))
    assert torch.equal(net.stages.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    torch.save(net.state_dict(), tmp_path / "ours.pth")
    again = ft.get_backbone("resnet18", weights_path=str(tmp_path / "ours.pth"))
    assert torch.equal(again.stages.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)


def test_weights_path_mismatch_is_one_clear_error(tmp_path):
    torch.save(tvm.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match=r"weights file .*r18.pth for backbone resnet50 does not fit: missing"):
        ft.get_backbone("resnet50", weights_path=str(tmp_path / "r18.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="weights file .*junk.pth is damaged or not a PyTorch weights file"):
        ft.get_backbone("resnet18", weights_path=str(tmp_path / "junk.pth"))
    with pytest.raises(WeightsError, match="does not exist"):
        ft.get_backbone("resnet18", weights_path=str(tmp_path / "none.pth"))
