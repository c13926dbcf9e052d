"""Checkpoint files: read safely, written atomically with a content digest, and described.

Every checkpoint :func:`write_checkpoint` saves carries, under ``checkpoint["facetransfer_digest"]``,
one SHA-256 per top-level entry over every tensor's dtype, shape and bytes and every plain value, since
``torch.load`` loads a checkpoint with flipped bits without an error. :func:`read_checkpoint`, the one
reader, loads with ``weights_only=True`` and names the entry that changed (docs/reliability.md)::

    >>> checkpoint = with_digest({"state_dict": {"w": torch.ones(3)}, "epoch": 2})
    >>> verify_digest(checkpoint, "model.ckpt")
    True
    >>> checkpoint["state_dict"]["w"][1] = 5.0
    >>> verify_digest(checkpoint, "model.ckpt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    facetransfer.io.checkpoint.DigestMismatch: checkpoint model.ckpt is damaged: its state_dict does not match ...

A checkpoint without a digest (an older file, one saved by plain Lightning) loads as before.
:class:`CheckpointInfo` says what a checkpoint holds without building its model::

    >>> info = CheckpointInfo.read("runs/.../best.ckpt")  # doctest: +SKIP
    >>> info.backbone, info.weights, info.face_crop, len(info.class_names)  # doctest: +SKIP
    ('dlib_resnet', 'FACE_API', 1.0, 40)
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError
from .atomic import atomic_write

_PATH = str | os.PathLike

DIGEST_KEY = "facetransfer_digest"
ALGORITHM = "sha256"


class DigestMismatch(WeightsError):
    """A checkpoint's content differs from the digest written when it was saved."""

    def __init__(self, changed: list[str], path: _PATH | None = None) -> None:
        where = f"checkpoint {path}" if path is not None else "the checkpoint"
        super().__init__(
            f"{where} is damaged: its {', '.join(changed)} does not match the {ALGORITHM} digest written when it was "
            "saved (changed on disk, in a copy or by an edit), so it was not loaded; use an intact copy, e.g. another "
            "checkpoint of the run (best-*.ckpt, last.ckpt)"
        )


def _tensor_bytes(tensor: torch.Tensor) -> tuple[str, Any]:
    """``(order, bytes)``: a dense tensor's elements in memory order (row-major or channels-last, which
    ``torch.save`` keeps; no copy on the CPU), any other tensor's in logical order."""
    t = tensor.detach()
    if t.is_quantized:
        t = t.int_repr()
    elif t.layout != torch.strided:
        t = t.to_dense()
    t = t.resolve_conj().resolve_neg().cpu()
    for order, memory_format in (("C", torch.contiguous_format), ("NHWC", torch.channels_last),
                                 ("NDHWC", torch.channels_last_3d)):
        if t.dim() == {"NHWC": 4, "NDHWC": 5}.get(order, t.dim()) and t.is_contiguous(memory_format=memory_format):
            return order, t.as_strided((t.numel(),), (1,)).view(torch.uint8).numpy()
    return "C", t.contiguous().reshape(-1).view(torch.uint8).numpy()


def _feed(h: Any, obj: Any) -> None:
    """Add ``obj`` to the hash ``h``: tensors by dtype, shape, layout and bytes; containers in order; plain values by value.

    Values are normalised to what ``torch.load(weights_only=True)`` gives back (an ``OrderedDict`` and a
    ``dict`` alike, a tuple and a list alike), so a file's digest is the same after a save/load round trip.
    """
    if isinstance(obj, torch.Tensor):
        h.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
        if obj.device.type != "meta":
            try:
                order, data = _tensor_bytes(obj)
            except (RuntimeError, TypeError):  # exotic layouts (nested tensors): covered by dtype and shape only
                order, data = "?", b""
            h.update(order.encode())
            h.update(data)
    elif isinstance(obj, Mapping):
        h.update(b"M%d" % len(obj))
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d" % len(obj))
        for value in obj:
            _feed(h, value)
    elif obj is None or isinstance(obj, bool):
        h.update(f"B{obj}".encode())
    elif isinstance(obj, int):
        h.update(f"I{int(obj)}".encode())
    elif isinstance(obj, float):
        h.update(f"F{float(obj)!r}".encode())
    elif isinstance(obj, str):
        h.update(b"S%d:" % len(obj) + obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, (bytes, bytearray)):
        h.update(b"Y%d:" % len(obj) + bytes(obj))
    elif isinstance(obj, (torch.dtype, torch.device)):
        h.update(f"D{obj}".encode())
    elif hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalars and arrays
        _feed(h, torch.as_tensor(obj) if getattr(obj, "ndim", 0) else obj.item())
    else:  # other objects: present, but their content is not covered
        h.update(b"?")


def part_digest(value: Any) -> str:
    """The hex SHA-256 of one checkpoint entry (see :func:`_feed` for what it covers)."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def with_digest(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``checkpoint`` with its digest added (what :class:`AtomicCheckpointIO` saves):
    ``{"algorithm": "sha256", "parts": {key: hex digest}}`` of every top-level entry."""
    parts = {str(key): part_digest(value) for key, value in checkpoint.items() if key != DIGEST_KEY}
    return {**checkpoint, DIGEST_KEY: {"algorithm": ALGORITHM, "parts": parts}}


def verify_digest(checkpoint: Mapping[str, Any], path: _PATH | None = None) -> bool:
    """Compare a loaded checkpoint with its stored digest.

    Returns True when it matches, False when the checkpoint carries no digest (older or foreign files
    load as before); raises :class:`DigestMismatch` naming the entries that changed (or appeared, or went
    missing) otherwise.
    """
    stored = checkpoint.get(DIGEST_KEY)
    if stored is None:
        return False
    if not isinstance(stored, Mapping) or stored.get("algorithm") != ALGORITHM or not isinstance(stored.get("parts"), Mapping):
        raise DigestMismatch(["digest record"], path)
    expected = stored["parts"]
    actual = {str(k): v for k, v in checkpoint.items() if k != DIGEST_KEY}
    changed = [key if key in actual else f"{key} (missing)" for key in expected
               if key not in actual or part_digest(actual[key]) != expected[key]]
    changed += [f"{key} (added)" for key in actual if key not in expected]
    if changed:
        raise DigestMismatch(changed, path)
    return True


LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, struct.error)


@contextmanager
def load_errors(path: _PATH, what: str = "checkpoint") -> Iterator[None]:
    """Turn what ``torch.load(weights_only=True)`` raises on a missing, unsafe, truncated or foreign file into one
    :class:`WeightsError` naming ``what`` (checkpoint, weights file); other errors (e.g. a shape mismatch) pass."""
    try:
        yield
    except LOAD_ERRORS as err:
        text = str(err)
        if isinstance(err, RuntimeError) and not any(
            s in text for s in ("PytorchStreamReader", "zip archive", "Weights only load failed")
        ):
            raise
        if isinstance(err, FileNotFoundError):
            raise WeightsError(f"{what} file {path} does not exist") from None
        if "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text) or re.search(r"unsupported GLOBAL (\S+)", text)
            name = f" ({found.group(1)})" if found else ""
            raise WeightsError(
                f"{what} {path} holds a pickled Python object{name}, not only tensors and plain data; it was refused "
                "(facetransfer loads only plain state dicts and checkpoints, with weights_only=True)"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        raise WeightsError(f"{what} {path} is damaged or not a PyTorch {what}: {first}") from None


def read_checkpoint(path: _PATH) -> dict[str, Any]:
    """A checkpoint file as a dict, loaded safely (``weights_only=True``, on the CPU) and checked against
    its content digest; a missing, unsafe or damaged file is one :class:`~facetransfer.errors.WeightsError`.
    Every reader of a checkpoint comes here (docs/architecture.md lists them)."""
    if Path(path).is_dir():
        raise WeightsError(f"checkpoint {path} is a folder; give one of its .ckpt files (or --ckpt_path last)")
    if not Path(path).is_file():
        raise WeightsError(f"checkpoint file {path} does not exist")
    if not zipfile.is_zipfile(path):  # what torch.save writes (else torch reports a text file as "pickled")
        raise WeightsError(f"checkpoint {path} is damaged or not a PyTorch checkpoint: not a zip archive")
    with load_errors(path):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"checkpoint {path} is not a Lightning checkpoint (a {type(checkpoint).__name__})")
    return checked(checkpoint, path)


def checked(checkpoint: dict[str, Any], path: _PATH) -> dict[str, Any]:
    """``checkpoint`` (loaded from ``path``) after its digest is verified, without the digest entry."""
    verify_digest(checkpoint, path)
    checkpoint.pop(DIGEST_KEY, None)
    return checkpoint


def write_checkpoint(checkpoint: Mapping[str, Any], path: _PATH, kept: str | None = None) -> Path:
    """Save ``checkpoint`` with its content digest, atomically (``kept`` words what a failed save keeps)."""
    return atomic_torch_save(with_digest(checkpoint), path, what="checkpoint", kept=kept)


def atomic_torch_save(obj: Any, path: _PATH, what: str = "file", kept: str | None = None) -> Path:
    """``torch.save`` to ``path`` through :func:`~facetransfer.io.atomic.atomic_write` (temporary file, fsync,
    rename); ``what`` and ``kept`` word the one-line error of a full or read-only disk."""
    with atomic_write(path, "wb", what=what, kept=kept) as fh:
        torch.save(obj, fh)
    return Path(path)


@dataclass(frozen=True)
class CheckpointInfo:
    """Facts about a :class:`~facetransfer.FaceClassifier` checkpoint.

    Attributes:
        backbone: the backbone's registered name (or class name for a ``class_path`` backbone).
        weights: the pretrained weights it started from (``IMAGENET1K_V1``, ``FACE_API`` ...), or None.
        weights_path: the local state dict it started from, or None.
        class_names: the identities of its head (empty for a checkpoint without one).
        face_crop: the face crop of the training images (from the stored split), None if not recorded.
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
    def read(cls, path: _PATH) -> CheckpointInfo:
        """Read a checkpoint's metadata; a missing, damaged or foreign file is a :class:`WeightsError`."""
        return cls.of(path, read_checkpoint(path))

    @classmethod
    def of(cls, path: _PATH, data: dict[str, Any]) -> CheckpointInfo:
        """The metadata of a checkpoint already read (``data``: :func:`read_checkpoint`'s dict)."""
        path = Path(path)
        hparams = data.get("hyper_parameters")
        if not isinstance(hparams, dict) or "state_dict" not in data:
            raise WeightsError(f"{path} is not a FaceClassifier checkpoint (no hyper_parameters/state_dict)")
        info = data.get("facetransfer") or {}
        backbone = info.get("backbone") or hparams.get("backbone")
        manifest = stored_manifest(data)
        crop = ((manifest or {}).get("settings") or {}).get("face_crop")
        return cls(path=path, backbone=str(backbone), weights=hparams.get("weights"),
                   weights_path=hparams.get("weights_path"),
                   class_names=list(info.get("class_names") or hparams.get("class_names") or []),
                   face_crop=float(crop) if crop is not None else None, hparams=dict(hparams), manifest=manifest)

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


__all__ = [
    "ALGORITHM", "DIGEST_KEY", "LOAD_ERRORS", "CheckpointInfo", "DigestMismatch", "atomic_torch_save", "checked",
    "load_errors", "part_digest", "read_checkpoint", "stored_manifest",
    "verify_digest", "with_digest", "write_checkpoint",
]
