"""Test-time augmentation (``tta``: flip, jitter:N) and score normalisation of pair verification."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.errors import ConfigError
from facetransfer.features import TTA, batch_features
from facetransfer.verification import Embedder, Gallery
from facetransfer.verification.evaluate import pair_scores
from facetransfer.verification.metrics import assign_folds, kfold_accuracy, verification_metrics

from .fakes import make_folder_tree, write_face
from .test_verification import lfw_pairs_tree  # noqa: F401 (a fixture)

TINY = {"widths": [8, 16], "fc_features": 16}


@pytest.fixture
def net() -> ft.models.Backbone:
    torch.manual_seed(0)
    return ft.get_backbone("scratch_cnn", input_size=48, **TINY).eval()


@pytest.fixture
def faces(net, tmp_path) -> torch.Tensor:
    """Four preprocessed face-like images (smooth, so a jitter moves them a little)."""
    paths = [write_face(tmp_path / f"{i}.png", identity=i % 2, index=i, size=48) for i in range(4)]
    transform = net.preprocess.eval_transform(1.0)
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


@pytest.fixture
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])


# --- the views ------------------------------------------------------------------------------------
def test_flip_through_tta_is_the_mirror_average(net, faces):
    """``tta="flip"`` is what the flip flag computed: the unit features of the image and its mirror, averaged,
    normalised; ``Embedder(flip=True)`` is ``Embedder(tta="flip")``."""
    with torch.no_grad():
        unit = [F.normalize(net.forward_features(x), dim=1) for x in (faces, faces.flip(-1))]
    expected = F.normalize((unit[0] + unit[1]) / 2, dim=1)
    got = batch_features(net, [faces], normalize=True, tta="flip", fuse=False, channels_last=False)
    assert torch.allclose(got, expected, atol=1e-5)
    by_flag, by_tta = Embedder(net, flip=True), Embedder(net, tta="flip")
    assert torch.equal(by_flag(faces), by_tta(faces)) and by_flag.describe()["tta"] == "flip"
    assert by_flag.describe()["flip"] is True and Embedder(net).describe()["tta"] == "none"


def test_jitter_is_seeded_and_changes_embeddings_slightly(net, faces):
    plain = Embedder(net)(faces)
    jittered = Embedder(net, tta="jitter:4")(faces)
    assert torch.equal(jittered, Embedder(net, tta="jitter:4")(faces))  # the same seed, the same embeddings
    assert torch.allclose(jittered.norm(dim=1), torch.ones(4), atol=1e-5)
    assert not torch.allclose(plain, jittered, atol=1e-7)
    raw, raw_jittered = batch_features(net, [faces]), batch_features(net, [faces], tta="jitter:4")
    change = (raw_jittered - raw).norm(dim=1) / raw.norm(dim=1)
    assert (change > 1e-4).all() and (change < 0.01).all()  # moved, a little
    other_seed = batch_features(net, [faces], normalize=True, tta=TTA("jitter", 4, seed=1))
    assert not torch.allclose(other_seed, jittered, atol=1e-5)
    alone = torch.cat([Embedder(net, tta="jitter:4")(faces[i : i + 1]) for i in range(4)])
    assert torch.allclose(alone, jittered, atol=1e-5)  # an image's embedding does not depend on its batch


def test_jitters_are_small_rotations_scalings_shifts_and_mirrors():
    theta = TTA.parse("jitter:200").jitters()
    linear = theta[:, :, :2]
    scale = linear.det().abs().sqrt()
    assert theta.shape == (200, 2, 3) and scale.min() >= 0.96 - 1e-6 and scale.max() <= 0.99 + 1e-6
    assert theta[:, :, 2].abs().max() <= 0.04 + 1e-6  # 2 % of the side, in [-1, 1] units
    mirrored = linear.det() < 0
    assert 0.3 < mirrored.float().mean() < 0.7
    angles = torch.rad2deg(torch.atan2(-linear[:, 0, 1], linear[:, 1, 1]))  # the mirror flips the first column only
    assert angles.abs().max() <= 3.0 + 1e-4 and angles.max() > 2.0 and angles.min() < -2.0


@pytest.mark.parametrize("spec", ["jitter:0", "foo", "flip:2", "jitter:", "jitter:-1", "none:1"])
def test_bad_tta_is_one_config_error(net, spec):
    with pytest.raises(ConfigError, match="not one of: none, flip, jitter:N"):
        Embedder(net, tta=spec)
    with pytest.raises(ConfigError, match="flip=True means tta='flip'"):
        Embedder(net, flip=True, tta="jitter:2")


def test_gallery_remembers_its_tta(tmp_path):
    torch.manual_seed(0)
    model = ft.FaceClassifier("scratch_cnn", backbone_args={**TINY, "input_size": 32})
    root = make_folder_tree(tmp_path / "people", identities=2, per_identity=2, size=32)
    gallery = Gallery(model, tta="jitter:2")
    gallery.enroll_folder(root)
    gallery.save(tmp_path / "g.gallery")
    loaded = Gallery.load(tmp_path / "g.gallery", model)
    assert str(loaded.embedder.tta) == "jitter:2" and torch.equal(loaded.embeddings, gallery.embeddings)
    assert Gallery.read_metadata(tmp_path / "g.gallery")["model"]["tta"] == "jitter:2"


# --- score normalisation --------------------------------------------------------------------------
def protocol_of(pairs: list[tuple[int, int, bool]]) -> SimpleNamespace:
    """A stand-in for a PairsProtocol: image i is the key ``str(i)``."""
    return SimpleNamespace(pairs=[SimpleNamespace(key1=str(a), key2=str(b), same=same) for a, b, same in pairs],
                           keys=lambda pair: (pair.key1, pair.key2))


@pytest.mark.parametrize("norm", ["center", "asnorm"])
def test_score_norm_uses_only_the_other_folds_images(norm):
    """Fold k's row must not move when fold k's own images change (it would, if they entered the mean or the
    cohort), and those images' pairs must (their embeddings are used, only not to normalise)."""
    rng = np.random.default_rng(0)
    pairs = [(2 * i, 2 * i + 1, i % 2 == 0) for i in range(20)] + [(0, 39, False)]  # image 0: folds 0 and 1
    keys = [str(i) for i in range(41)]
    labels = np.array([p[2] for p in pairs], dtype=np.int64)
    folds = np.array([0] * 10 + [1] * 10 + [1])
    embeddings = F.normalize(torch.from_numpy(rng.normal(size=(41, 8))).float() + 2, dim=1)
    scores = pair_scores(protocol_of(pairs), embeddings, keys, folds, norm)
    assert scores.shape == (2, 21)
    moved = embeddings.clone()
    moved[20:40] = F.normalize(moved[20:40] + 5 * torch.randn(20, 8), dim=1)  # images of fold 1's pairs only
    moved[0] = F.normalize(moved[0] + 5 * torch.randn(8), dim=0)  # image 0 is in fold 1 too: not in its mean
    again = pair_scores(protocol_of(pairs), moved, keys, folds, norm)
    assert np.allclose(again[1, folds == 0][1:], scores[1, folds == 0][1:], atol=1e-6)  # pair 0 holds image 0
    assert not np.allclose(again[1, folds == 1], scores[1, folds == 1])
    assert not np.allclose(again[0, folds == 0][1:], scores[0, folds == 0][1:])  # fold 0's mean saw images 20-39
    assert verification_metrics(scores, labels, folds).num_folds == 2 and np.isfinite(scores).all()
    plain = pair_scores(protocol_of(pairs), embeddings, keys)
    assert plain.shape == (21,) and np.allclose(plain, (embeddings[:40:2] * embeddings[1:40:2]).sum(1).tolist() +
                                                [float(embeddings[0] @ embeddings[39])], atol=1e-6)
    with pytest.raises(ConfigError, match="unknown score_norm 'zscore'; known: none, center, asnorm"):
        pair_scores(protocol_of(pairs), embeddings, keys, folds, "zscore")


def test_euclidean_scores_are_minus_the_distance_and_asnorm_ranks_by_it():
    """``distance="euclidean"``: a pair's score is minus the distance between the raw embeddings (their lengths
    count); asnorm standardises it by each image's nearest cohort images; ``center`` is refused (nothing moves)."""
    rng = np.random.default_rng(1)
    pairs = [(2 * i, 2 * i + 1, i % 2 == 0) for i in range(20)]
    keys = [str(i) for i in range(40)]
    raw = torch.from_numpy(rng.normal(size=(40, 8))).float() * torch.linspace(0.5, 2.0, 40)[:, None]
    plain = pair_scores(protocol_of(pairs), raw, keys, distance="euclidean")
    assert np.allclose(plain, [-float((raw[a] - raw[b]).norm()) for a, b, _ in pairs], atol=1e-5)
    assert not np.allclose(plain, pair_scores(protocol_of(pairs), F.normalize(raw, dim=1), keys, distance="euclidean"))
    folds = np.array([0] * 10 + [1] * 10)
    normed = pair_scores(protocol_of(pairs), raw, keys, folds, "asnorm", distance="euclidean")
    cohort = raw[20:40]  # fold 0's cohort: the images of fold 1's pairs
    a, b = 0, 1
    # the 19 (= cohort - 1) highest similarities, minus distances, of each image to the cohort
    top = [(-torch.cdist(raw[i][None], cohort)[0]).topk(19).values.double().numpy() for i in (a, b)]
    expected = np.mean([(plain[0] - t.mean()) / t.std(ddof=1) for t in top])
    assert normed[0, 0] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ConfigError, match="score_norm='center' changes nothing with Euclidean distances"):
        pair_scores(protocol_of(pairs), raw, keys, folds, "center", distance="euclidean")
    with pytest.raises(ConfigError, match="unknown distance 'manhattan'; known: cosine, euclidean"):
        pair_scores(protocol_of(pairs), raw, keys, distance="manhattan")


def test_raw_embeddings_average_the_views_as_they_are(net, faces):
    """``Embedder(normalize=False)`` keeps the features' lengths and averages jittered views unnormalised (dlib's
    way); a gallery refuses such an embedder (it compares by cosine)."""
    raw = Embedder(net, normalize=False)(faces)
    with torch.no_grad():
        assert torch.allclose(raw, net.forward_features(faces), atol=1e-5)
    views = TTA.parse("jitter:3").images(faces, -torch.tensor(net.preprocess.mean) / torch.tensor(net.preprocess.std))
    with torch.no_grad():
        expected = sum(net.forward_features(v) for v in views) / 3
    assert torch.allclose(Embedder(net, normalize=False, tta="jitter:3")(faces), expected, atol=1e-5)
    assert Embedder(net, normalize=False).describe()["normalize"] is False
    assert "normalize" not in Embedder(net).describe()  # galleries of normalised embeddings describe as before
    with pytest.raises(ConfigError, match="a gallery compares normalised embeddings by cosine similarity"):
        Gallery(Embedder(net, normalize=False))


def test_per_fold_scores_choose_and_test_each_fold_on_its_own_row():
    labels = np.array([1, 1, 0, 0] * 4)
    folds = assign_folds(labels, 2)
    good = np.where(labels == 1, 0.9, 0.1)
    # row 0 (test fold 0): its training pairs put the threshold at 0.8, above all of its test pairs
    row0 = np.where(folds == 0, np.where(labels == 1, 0.6, 0.4), np.where(labels == 1, 0.9, 0.7))
    accuracies, thresholds = kfold_accuracy(np.stack([row0, good]), labels, folds)
    assert accuracies.tolist() == [0.5, 1.0] and thresholds[0] == pytest.approx(0.8)  # any other row: 1.0
    m = verification_metrics(np.stack([row0, good]), labels, folds)
    assert m.num_pairs == 16 and m.accuracy == 0.75 and m.auc == 1.0  # AUC of each pair's own-fold score


# --- the commands ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--tta", "jitter:0"], r"--tta: test-time augmentation 'jitter:0' is not one of: none, flip, jitter:N"),
        (["--tta", "foo"], r"--tta: test-time augmentation 'foo' is not one of"),
        (["--flip", "--tta", "jitter:2"], r"--flip is --tta flip; give one of --flip and --tta jitter:2"),
        (["--score_norm", "zscore"], r"--score_norm"),
        (["--distance", "manhattan"], r"--distance"),
    ],
)
def test_verify_refuses_bad_tta_in_one_line(args, pattern, capsys, clean_argv, tmp_path):
    assert main(["verify", "--pairs", str(tmp_path / "missing.txt"), "--backbone", "scratch_cnn", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("facetransfer: error:") and len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err) and "Traceback" not in err


def test_gallery_enroll_refuses_bad_tta(capsys, clean_argv, tmp_path):
    assert main(["gallery", "enroll", "--root", str(tmp_path), "--out", str(tmp_path / "g"), "--backbone",
                 "scratch_cnn", "--tta", "jitter:0"]) == 2
    assert "--tta: test-time augmentation 'jitter:0'" in capsys.readouterr().err


def test_verify_with_jitter_and_centred_scores(lfw_pairs_tree, tmp_path, capsys, clean_argv):  # noqa: F811
    out = tmp_path / "verify"
    assert main(["verify", "--pairs", str(lfw_pairs_tree / "pairsDevTrain.txt"), "--backbone", "scratch_cnn",
                 "--folds", "2", "--input_size", "48", "--num_workers", "0", "--out", str(out),
                 "--tta", "jitter:2", "--score_norm", "center"]) == 0
    assert "face_crop 0.6, tta jitter:2, score_norm center): acc" in capsys.readouterr().out
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model"]["tta"] == "jitter:2" and saved["score_norm"] == "center"
    help_text = subprocess.run([sys.executable, "-m", "facetransfer", "verify", "--help"], capture_output=True,
                               text=True, cwd=Path(__file__).parents[1], env={**os.environ, "COLUMNS": "200"}).stdout
    assert "--tta TTA" in help_text and "--flip" in help_text and "--score_norm" in help_text
    assert "--distance {cosine,euclidean}" in help_text


def test_verify_with_euclidean_distances(lfw_pairs_tree, tmp_path, capsys, clean_argv):  # noqa: F811
    out = tmp_path / "verify"
    assert main(["verify", "--pairs", str(lfw_pairs_tree / "pairsDevTrain.txt"), "--backbone", "scratch_cnn",
                 "--folds", "2", "--input_size", "48", "--num_workers", "0", "--out", str(out),
                 "--tta", "jitter:2", "--distance", "euclidean"]) == 0
    printed = capsys.readouterr().out
    assert "tta jitter:2, euclidean distance): acc" in printed and "distance threshold on all pairs" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["distance"] == "euclidean" and saved["model"]["normalize"] is False
    scores = [float(line.split("\t")[-1]) for line in (out / "scores.tsv").read_text().splitlines()[1:]]
    assert all(s <= 0 for s in scores) and len(set(scores)) > 1
    assert main(["verify", "--pairs", str(lfw_pairs_tree / "pairsDevTrain.txt"), "--backbone", "scratch_cnn",
                 "--folds", "2", "--input_size", "48", "--out", str(out), "--distance", "euclidean",
                 "--score_norm", "center"]) == 2
    assert "score_norm='center' changes nothing with Euclidean distances" in capsys.readouterr().err
