"""What a trained checkpoint says about its model, read without building it, and the model itself.

Tools that use a trained model (``facetransfer export``, ``facetransfer gallery``) need more
than the weights: the backbone and weights names, the identity names and the face crop the
model was trained with (recorded in the split manifest the DataModule stores)::

    >>> info = CheckpointInfo.read("runs/.../best.ckpt")  # doctest: +SKIP
    >>> info.backbone, info.weights, info.face_crop, len(info.class_names)  # doctest: +SKIP
    ('dlib_resnet', 'FACE_API', 1.0, 40)
    >>> model = load_model("runs/.../best.ckpt")  # doctest: +SKIP

Both read the file with ``torch.load(weights_only=True)``: a checkpoint runs no code.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint_digest import DIGEST_KEY, verify_digest
from .errors import WeightsError

_PATH = str | os.PathLike

if TYPE_CHECKING:
    from .module import FaceClassifier


def checkpoint_error(path: _PATH, err: BaseException) -> WeightsError:
    """The :class:`WeightsError` for a checkpoint that ``torch.load(weights_only=True)`` refused."""
    text = str(err)
    if isinstance(err, FileNotFoundError):
        return WeightsError(f"checkpoint file {path} does not exist")
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return WeightsError(
            f"checkpoint {path} holds a pickled Python object{what}, not only tensors and plain data; "
            "facetransfer loads checkpoints with weights_only=True and refuses it (only load files you trust "
            "with torch.load(weights_only=False), then save their state_dict)"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return WeightsError(f"checkpoint {path} is damaged or not a PyTorch checkpoint: {first}")


LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError)


def is_load_error(err: BaseException) -> bool:
    """True for what ``torch.load`` raises on an unsafe, truncated or foreign file (not e.g. a shape mismatch)."""
    if isinstance(err, RuntimeError):
        return any(s in str(err) for s in ("PytorchStreamReader", "zip archive", "Weights only load failed"))
    return isinstance(err, LOAD_ERRORS)


def read_checkpoint(path: _PATH) -> dict[str, Any]:
    """A checkpoint file as a dict, loaded safely (``weights_only=True``, on the CPU) and checked against
    its content digest; a missing, unsafe or damaged file is one :class:`~facetransfer.errors.WeightsError`."""
    if not Path(path).is_file():
        raise WeightsError(f"checkpoint file {path} does not exist")
    if not zipfile.is_zipfile(path):  # what torch.save writes (else torch reports a text file as "pickled")
        raise WeightsError(f"checkpoint {path} is damaged or not a PyTorch checkpoint: not a zip archive")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        if not is_load_error(err):
            raise
        raise checkpoint_error(path, err) from None
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"checkpoint {path} is not a Lightning checkpoint (a {type(checkpoint).__name__})")
    verify_digest(checkpoint, path)
    checkpoint.pop(DIGEST_KEY, None)
    return checkpoint


@dataclass(frozen=True)
class CheckpointInfo:
    """Facts about a :class:`~facetransfer.FaceClassifier` checkpoint.

    Attributes:
        path: the checkpoint file.
        backbone: the backbone's registered name (or class name for a ``class_path`` backbone).
        weights: the pretrained weights it started from (``IMAGENET1K_V1``, ``FACE_API`` ...), or None.
        weights_path: the local state dict it started from, or None.
        class_names: the identities of its head (empty for a checkpoint without one).
        face_crop: the face crop of the training images (from the stored split), None if not recorded.
        hparams: all of the model's hyperparameters.
        manifest: the stored split manifest (``SplitManifest.to_dict()``), None if not stored.
    """

    path: Path
    backbone: str
    weights: str | None
    weights_path: str | None
    class_names: list[str]
    face_crop: float | None
    hparams: dict[str, Any] = field(default_factory=dict, repr=False)
    manifest: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def read(cls, path: str | os.PathLike) -> CheckpointInfo:
        """Read a checkpoint's metadata; a missing, damaged or foreign file is a :class:`WeightsError`."""
        path = Path(path)
        data = read_checkpoint(path)
        hparams = data.get("hyper_parameters")
        if not isinstance(hparams, dict) or "state_dict" not in data:
            raise WeightsError(f"{path} is not a FaceClassifier checkpoint (no hyper_parameters/state_dict)")
        info = data.get("facetransfer") or {}
        backbone = info.get("backbone") or hparams.get("backbone")
        manifest = stored_manifest(data)
        crop = ((manifest or {}).get("settings") or {}).get("face_crop")
        return cls(
            path=path,
            backbone=str(backbone),
            weights=hparams.get("weights"),
            weights_path=hparams.get("weights_path"),
            class_names=list(info.get("class_names") or hparams.get("class_names") or []),
            face_crop=float(crop) if crop is not None else None,
            hparams=dict(hparams),
            manifest=manifest,
        )

    @property
    def weights_name(self) -> str:
        """How the backbone's weights started, in words: ``FACE_API``, ``file mine.pth``, ``random``."""
        if self.weights:
            return str(self.weights)
        if self.weights_path:
            return f"file {self.weights_path}"
        return "random"


def stored_manifest(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The split manifest a :class:`~facetransfer.FaceDataModule` stored in a checkpoint dict, if any.

    Lightning stores a DataModule's ``state_dict`` under its class name; facetransfer's is
    ``{"manifest": {"classes": ..., "test": ..., "settings": {"face_crop": ...}, "source": ...}}``.
    """
    for value in checkpoint.values():
        if isinstance(value, dict) and isinstance(value.get("manifest"), dict):
            return value["manifest"]
    return None


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> FaceClassifier:
    """The :class:`~facetransfer.FaceClassifier` of a checkpoint, in eval mode (safe loading)."""
    from .module import FaceClassifier

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint file {path} does not exist")
    try:
        model = FaceClassifier.load_from_checkpoint(path, map_location=map_location)
    except KeyError as err:  # a torch file, but not one of a LightningModule
        raise WeightsError(f"{path} is not a FaceClassifier checkpoint (missing {err})") from None
    return model.eval()


__all__ = ["LOAD_ERRORS", "CheckpointInfo", "checkpoint_error", "is_load_error", "load_model", "read_checkpoint", "stored_manifest"]
