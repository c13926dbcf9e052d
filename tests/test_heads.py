"""Identity heads (linear, cosine, cosface, arcface) and the embedding projection."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from facetransfer import FaceClassifier
from facetransfer.errors import ConfigError
from facetransfer.models import get_backbone
from facetransfer.models.heads import get_head, list_heads
from facetransfer.verification import Embedder

X = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]])
Y = torch.tensor([1, 0])


def _head(name: str, **options) -> nn.Module:
    head = get_head(name, 2, 3, **options)
    with torch.no_grad():
        head.weight.copy_(W)
        if hasattr(head, "bias"):
            head.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
    return head


# cosines of X's rows with W's rows, by hand: x1 = (0.6, 0.8), x2 = (1, 0); w = (1, 0), (0, 1), (-0.7071, 0.7071)
COS = torch.tensor([[0.6, 0.8, 0.2 / math.sqrt(2)], [1.0, 0.0, -1 / math.sqrt(2)]])


def test_the_built_in_heads_are_registered():
    assert {"linear", "cosine", "cosface", "arcface"} <= set(list_heads())


def test_linear_head_is_x_w_plus_b_with_or_without_labels():
    head = _head("linear")
    expected = torch.tensor([[3.5, 7.5, 1.0], [1.5, -0.5, -1.0]])
    assert torch.allclose(head(X), expected)
    assert torch.allclose(head(X, Y), expected)  # no margin


def test_cosine_head_is_scaled_cosine():
    assert torch.allclose(_head("cosine", scale=10.0)(X, Y), 10 * COS, atol=1e-5)


def test_cosface_subtracts_the_margin_from_the_true_class_only_while_training():
    head = _head("cosface", scale=10.0, margin=0.25)
    expected = COS.clone()
    expected[0, 1] -= 0.25
    expected[1, 0] -= 0.25
    assert torch.allclose(head(X, Y), 10 * expected, atol=1e-5)
    assert torch.allclose(head(X), 10 * COS, atol=1e-5)


def test_arcface_adds_the_margin_to_the_true_class_angle():
    head = _head("arcface", scale=10.0, margin=0.3)
    expected = COS.clone()
    expected[0, 1] = math.cos(math.acos(0.8) + 0.3)
    expected[1, 0] = math.cos(0.0 + 0.3)
    assert torch.allclose(head(X, Y), 10 * expected, atol=1e-5)
    assert torch.allclose(head(X), 10 * COS, atol=1e-5)


def test_arcface_continues_linearly_beyond_pi_minus_margin():
    head = _head("arcface", scale=1.0, margin=0.5)
    x = torch.tensor([[-1.0, 0.0]])  # angle pi with w1 = (1, 0): beyond pi - m
    logit = head(x, torch.tensor([0]))[0, 0]
    assert logit.item() == pytest.approx(-1.0 - 0.5 * math.sin(0.5), abs=1e-5)
    assert logit.item() < math.cos(math.pi - 0.5 + 0.5)  # lower than the cosine at the boundary


def test_head_options_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="does not take head_args 'marg'"):
        FaceClassifier("scratch_cnn", class_names=["a", "b"], head="arcface", head_args={"marg": 0.1})
    with pytest.raises(ConfigError, match="margin must be in"):
        FaceClassifier("scratch_cnn", class_names=["a", "b"], head="arcface", head_args={"margin": 2.0})
    with pytest.raises(ConfigError, match="unknown head 'arcfac'"):
        FaceClassifier("scratch_cnn", head="arcfac")


def test_a_margin_head_on_a_frozen_backbone_without_projection_is_warned_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        FaceClassifier("scratch_cnn", freeze="all", head="cosface", class_names=["a", "b"])
        FaceClassifier("scratch_cnn", freeze="all", head="cosface", embedding_dim=8, class_names=["a", "b"])
        FaceClassifier("scratch_cnn", head="arcface", class_names=["a", "b"])
    messages = [str(w.message) for w in caught if "learns nothing but the head" in str(w.message)]
    assert len(messages) == 1 and "cosface" in messages[0]


def test_the_projection_is_the_embedding_and_trains_with_the_head():
    model = FaceClassifier("scratch_cnn", freeze="all", head="arcface", embedding_dim=16, class_names=["a", "b", "c"])
    assert model.backbone.embedding_size == 16
    groups = {g["name"]: g["params"] for g in model.param_groups()}
    neck = set(map(id, model.backbone.neck.parameters()))
    assert neck and neck <= set(map(id, groups["head"]))
    images = torch.rand(3, 3, 112, 112)
    model.eval()
    embeddings = Embedder(model)(images)
    assert embeddings.shape == (3, 16)
    expected = torch.nn.functional.normalize(model.backbone.neck(model.backbone.forward_features(images)), dim=1)
    assert torch.allclose(embeddings, expected, atol=1e-4)


def test_head_dropout_drops_pooled_features_before_the_projection():
    model = FaceClassifier("scratch_cnn", head="arcface", embedding_dim=8, head_dropout=0.5,
                           class_names=["a", "b", "c"])
    neck, head = model.backbone.neck, model.backbone.head
    assert isinstance(neck[0], torch.nn.Dropout) and neck[0].p == 0.5 and isinstance(neck[1], torch.nn.Linear)
    assert isinstance(head.dropout, torch.nn.Identity)  # dropped once, where the trained layers begin
    assert model.backbone.embedding_size == 8
    features = torch.ones(4, model.backbone.num_features)
    model.train()
    torch.manual_seed(0)
    dropped = neck[0](features)
    assert (dropped == 0).any() and (dropped == 2).any()  # inverted dropout: kept features scaled by 1 / (1 - p)
    model.eval()  # embeddings (verification, galleries, export) are deterministic
    images = torch.rand(2, 3, 112, 112)
    assert torch.equal(Embedder(model)(images), Embedder(model)(images))
    # without a projection it stays before the head, as before
    plain = FaceClassifier("scratch_cnn", head="linear", head_dropout=0.5, class_names=["a", "b"])
    assert isinstance(plain.backbone.neck, torch.nn.Identity) and plain.backbone.head.dropout.p == 0.5
    # the same options rebuild the same modules (what loading a checkpoint does): the weights load strictly
    rebuilt = FaceClassifier(**{k: model.hparams[k] for k in ("backbone", "head", "embedding_dim", "head_dropout",
                                                             "class_names")})
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert torch.allclose(Embedder(rebuilt.eval())(images), Embedder(model)(images), atol=1e-5)


def test_fit_head_fits_projection_and_margin_head_on_frozen_features():
    torch.manual_seed(0)
    model = FaceClassifier("scratch_cnn", freeze="all", head="arcface", head_args={"scale": 16.0, "margin": 0.2},
                           embedding_dim=8, class_names=["a", "b", "c"])
    centres = torch.randn(3, model.backbone.num_features) * 3
    labels = torch.arange(3).repeat(20)
    features = centres[labels] + torch.randn(60, model.backbone.num_features)
    before = [p.detach().clone() for p in model.backbone.neck.parameters()]
    model.fit_head(features, labels, iterations=50)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.neck.parameters()))
    model.eval()
    predicted = model.backbone.forward_head(features).argmax(1)
    assert (predicted == labels).float().mean() > 0.95


def test_checkpoints_of_the_sequential_linear_head_still_load():
    net = get_backbone("scratch_cnn")
    old = nn.Sequential(nn.BatchNorm1d(net.num_features, affine=False), nn.Dropout(0.1), nn.Linear(net.num_features, 4))
    old[0].running_mean.fill_(0.25)
    net.reset_head(4, dropout=0.1, norm=True)
    state = {f"head.{k}": v for k, v in old.state_dict().items()}
    state.update({k: v for k, v in net.state_dict().items() if not k.startswith("head.")})
    net.load_state_dict(state)
    assert torch.equal(net.head.weight, old[2].weight) and torch.equal(net.head.bias, old[2].bias)
    assert torch.all(net.head.norm.running_mean == 0.25)
