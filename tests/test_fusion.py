"""Inference passes with BatchNorm folded into the convolutions (models/fusion.py)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import facetransfer as ft
from facetransfer.features import extract_features
from facetransfer.models import Backbone, fused_feature_copy, inference_forward
from facetransfer.preprocess import Preprocess


def _perturbed_bn_stats(net: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so folding them is actually tested (fresh BN is identity-ish)."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return net


@pytest.mark.parametrize("name", ["scratch_cnn", "resnet18", "mobilenet_v2"])
def test_fused_copy_matches_the_backbone_and_has_no_batchnorm_left(name):
    net = _perturbed_bn_stats(ft.get_backbone(name, **({"input_size": 64} if name == "scratch_cnn" else {}))).eval()
    fused = fused_feature_copy(net)
    assert fused is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = net.forward_features(x)
        got = fused(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_inference_forward_leaves_the_backbone_as_it_was():
    net = _perturbed_bn_stats(ft.get_backbone("resnet18"))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    requires_grad = [p.requires_grad for p in net.parameters()]
    x = torch.randn(2, 3, 64, 64)
    for channels_last in (False, True):
        with torch.no_grad(), inference_forward(net, channels_last=channels_last) as features:
            features(x)
        assert net.training
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN stats not updated either
        assert [p.requires_grad for p in net.parameters()] == requires_grad
        assert net.stages[0][0].weight.is_contiguous()  # memory format unchanged


def test_untraceable_backbone_runs_unfused_with_the_same_numbers():
    class DataDependent(nn.Module):  # Python control flow on tensor values: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.bn(self.conv(x))
            return y if y.sum() > 0 else -y

    net = _perturbed_bn_stats(Backbone(OrderedDict(block=DataDependent()), 4, Preprocess(crop_size=16, resize_size=16))).train()
    assert fused_feature_copy(net) is None
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), inference_forward(net, channels_last=True) as features:
        got = features(x)
    assert net.training and net.stages[0].conv.weight.is_contiguous()
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(got, net.forward_features(x))


def test_backbone_without_batchnorm_is_not_copied():
    net = Backbone(OrderedDict(conv=nn.Conv2d(3, 4, 3)), 4, Preprocess(crop_size=16, resize_size=16))
    assert fused_feature_copy(net) is None


def test_extract_features_fused_equals_unfused():
    net = _perturbed_bn_stats(ft.get_backbone("mobilenet_v2"))
    data = TensorDataset(torch.randn(10, 3, 64, 64), torch.arange(10))
    fused, labels = extract_features(net, data, batch_size=4)
    plain, labels2 = extract_features(net, data, batch_size=4, fuse=False, channels_last=False)
    assert torch.equal(labels, labels2) and labels.tolist() == list(range(10))
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
    assert net.training  # get_backbone returns a module in training mode; it stays so
