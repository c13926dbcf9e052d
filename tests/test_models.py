"""Backbone registry, uniform interface, freeze policies, plug-ins."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

import facetransfer as ft
from facetransfer.errors import ConfigError
from facetransfer.models import registry
from facetransfer.training.freeze import apply_freeze_policy, frozen_stages_for

PAPER_AND_REQUIRED = ["vgg16", "resnet50", "resnet18", "mobilenet_v2", "scratch_cnn"]


@pytest.mark.parametrize("name", ft.list_backbones())
def test_every_backbone_has_the_uniform_interface(name):
    net = ft.get_backbone(name)
    size = net.preprocess.crop_size
    x = torch.randn(2, 3, size, size)
    net.eval()
    with torch.no_grad():
        feats = net.forward_features(x)
        assert feats.shape == (2, net.num_features)
        net.reset_head(7)
        assert net(x).shape == (2, 7)
        assert torch.allclose(net.forward_head(feats), net(x), atol=1e-5)
    assert len(net.stage_names) >= 2


def test_required_backbones_registered():
    assert set(PAPER_AND_REQUIRED) <= set(ft.list_backbones())


def test_unknown_backbone_lists_known():
    with pytest.raises(ConfigError, match=r"unknown backbone 'alexnet'; known: .*mobilenet_v2.*resnet50.*vgg16"):
        ft.get_backbone("alexnet")


def test_bad_builder_argument_is_named():
    with pytest.raises(ConfigError, match=r"backbone 'scratch_cnn': .*'depth'.*accepts: weights, weights_path, widths"):
        ft.get_backbone("scratch_cnn", depth=3)


def test_scratch_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="no pretrained weights"):
        ft.get_backbone("scratch_cnn", weights="IMAGENET1K_V1")


def test_unknown_weights_name_lists_known():
    with pytest.raises(ConfigError, match=r"unknown weights 'FACES' for resnet18; known: DEFAULT, IMAGENET1K_V1"):
        ft.get_backbone("resnet18", weights="FACES")


# --- freeze policies ----------------------------------------------------------------------------
STAGES = ["stem", "layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize(
    "policy, frozen",
    [
        ("none", []),
        ("all", STAGES),
        ("first:0", []),
        ("first:2", ["stem", "layer1"]),
        ("until:layer3", ["stem", "layer1", "layer2", "layer3"]),
        ("stages:layer1,layer3", ["layer1", "layer3"]),
    ],
)
def test_freeze_policies(policy, frozen):
    assert frozen_stages_for(policy, STAGES) == frozen


@pytest.mark.parametrize(
    "policy, message",
    [
        ("some", r"unknown freeze policy 'some'; known: all, first:ARG, none"),
        ("first:x", "needs an integer"),
        ("first:9", r"K must be in 0..5"),
        ("until:layer9", "unknown stage 'layer9'"),
        ("stages:", "unknown stage"),
        ("all:3", "takes no argument"),
    ],
)
def test_bad_freeze_policies(policy, message):
    with pytest.raises(ConfigError, match=message):
        frozen_stages_for(policy, STAGES)


def test_frozen_stages_keep_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    net = ft.get_backbone("resnet18")
    net.reset_head(3)
    apply_freeze_policy(net, "first:2")
    net.train()
    frozen = net.stages.layer1
    assert not frozen.training and net.stages.layer2.training  # frozen BN in eval mode even after train()
    assert all(not p.requires_grad for p in frozen.parameters())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    trained_before = net.stages.layer4[0].conv1.weight.clone()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = net(torch.randn(4, 3, 64, 64)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    for k, v in frozen.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and running statistics untouched
    assert not torch.equal(trained_before, net.stages.layer4[0].conv1.weight)


def test_linear_probe_freezes_everything_but_head():
    model = ft.FaceClassifier("scratch_cnn", freeze="all", class_names=["a", "b", "c"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("backbone.head") for n in trainable)
    assert model.backbone.fully_frozen


# --- plug-ins -----------------------------------------------------------------------------------
PLUGIN = textwrap.dedent(
    '''
    from collections import OrderedDict
    from torch import nn
    from facetransfer import Backbone, Preprocess

    class TinyNet(Backbone):
        """A two-stage plug-in backbone."""

        def __init__(self, width: int = 8) -> None:
            stages = OrderedDict(
                conv=nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU()),
                down=nn.Sequential(nn.Conv2d(width, width * 2, 3, stride=2), nn.ReLU()),
            )
            super().__init__(stages, width * 2, Preprocess(crop_size=32, resize_size=36))

    def tiny_net(weights=None, weights_path=None, width: int = 8):
        return TinyNet(width)
    '''
)


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A tiny installed distribution declaring a facetransfer.backbones entry point."""
    (tmp_path / "tiny_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "tiny_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[facetransfer.backbones]\ntiny_net = tiny_plugin:tiny_net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry.BACKBONES, "plugins_loaded", False)
    yield tmp_path
    registry.BACKBONES.builders.pop("tiny_net", None)
    sys.modules.pop("tiny_plugin", None)


def test_entry_point_plugin_is_registered(plugin_package):
    assert "tiny_net" in ft.list_backbones()
    net = ft.get_backbone("tiny_net", width=4)
    assert net.num_features == 8 and net.stage_names == ["conv", "down"]
    model = ft.FaceClassifier("tiny_net", backbone_args={"width": 4}, freeze="first:1", class_names=["a", "b"])
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
