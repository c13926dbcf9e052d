"""Tiny on-disk datasets for tests, rendered by the synthetic face generator, and access to
the real faces in ../shared/data (tests skip with a reason when they are absent)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from facetransfer.data.synthetic import render_face

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACETRANSFER_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
# the user's real torch hub cache, captured before tests point TORCH_HOME elsewhere
REAL_CHECKPOINTS = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"
DLIB_FILE = "dlib_resnet_face_api-24d0677b.pth"


def real_cached_file(name: str) -> Path:
    path = REAL_CHECKPOINTS / name
    if not path.is_file():
        pytest.skip(f"{path} not installed (run `make setup`)")
    return path


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real face data {path} is not present (set FACETRANSFER_SHARED_DATA)")
    return path


def write_face(path: Path, identity: int, index: int, size: int = 64, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = render_face(7, identity, index, image_size=size)
    image.convert(mode).save(path)
    return path


def make_lfw_tree(
    root: Path, counts: dict[str, int], variant: str = "lfw-deepfunneled", size: int = 64, people_file: bool = True
) -> Path:
    """An LFW-layout tree: ``root/<variant>/<Name>/<Name>_NNNN.jpg`` + peopleDevTrain.txt."""
    for ident, (name, n) in enumerate(sorted(counts.items())):
        for i in range(1, n + 1):
            write_face(root / variant / name / f"{name}_{i:04d}.jpg", ident, i, size)
    if people_file:
        lines = [str(len(counts))] + [f"{name}\t{n}" for name, n in sorted(counts.items())]
        (root / "peopleDevTrain.txt").write_text("\n".join(lines) + "\n")
    return root


def make_celeba_tree(root: Path, identities: int = 4, per_identity: int = 5, size: int = 48) -> Path:
    """``root/img_align_celeba/000001.jpg`` ... + identity_CelebA.txt + list_eval_partition.txt."""
    ids, parts = [], []
    n = 0
    for ident in range(identities):
        for j in range(per_identity):
            n += 1
            name = f"{n:06d}.jpg"
            write_face(root / "img_align_celeba" / name, ident, j, size)
            ids.append(f"{name} {100 + ident}")
            parts.append(f"{name} {0 if ident < identities - 1 else 2}")
    (root / "identity_CelebA.txt").write_text("\n".join(ids) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


def make_folder_tree(root: Path, identities: int = 4, per_identity: int = 6, size: int = 48) -> Path:
    """``root/person_k/<i>.<ext>`` with a mix of formats and modes (JPEG, PNG, grey PGM, RGBA PNG)."""
    formats = [("jpg", "RGB"), ("png", "RGB"), ("pgm", "L"), ("png", "RGBA")]
    for ident in range(identities):
        for i in range(per_identity):
            ext, mode = formats[(ident + i) % len(formats)]
            write_face(root / f"person_{ident}" / f"{i}.{ext}", ident, i, size, mode)
    return root


def copy_subset(src: Path, dest: Path, identities: list[str], per_identity: int | None = None) -> Path:
    """Copy some identity folders of a person-folder dataset (e.g. ORL) for a quick test."""
    for name in identities:
        files = sorted((src / name).iterdir())[:per_identity]
        (dest / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dest / name / f.name)
    return dest
