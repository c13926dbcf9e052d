"""A SHA-256 digest of a checkpoint's content, written when it is saved and checked when it is loaded.

``torch.load`` does not check the bytes of a tensor: a checkpoint with a few flipped bits
(a failing disk, a bad copy) loads, and the model then tests at NaN loss or chance accuracy
without an error. Every checkpoint facetransfer saves therefore carries, under
``checkpoint["facetransfer_digest"]``, one SHA-256 per top-level entry (``state_dict``,
``optimizer_states``, ``hyper_parameters``, the split ...) over every tensor's dtype, shape and
bytes (in memory order for the row-major and channels-last layouts ``torch.save`` keeps, so nothing
is copied) and every plain value. Each load compares them and names the entry that changed::

    >>> checkpoint = with_digest({"state_dict": {"w": torch.ones(3)}, "epoch": 2})
    >>> verify_digest(checkpoint, "model.ckpt")
    True
    >>> checkpoint["state_dict"]["w"][1] = 5.0
    >>> verify_digest(checkpoint, "model.ckpt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    facetransfer.checkpoint_digest.DigestMismatch: checkpoint model.ckpt is damaged: its state_dict does not match ...

A checkpoint without a digest (an older file, one saved by plain Lightning) loads as before. A loader
that has checked the digest removes it from the loaded dict, so a later hook does not hash it again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import torch

from .errors import WeightsError

DIGEST_KEY = "facetransfer_digest"
ALGORITHM = "sha256"


class DigestMismatch(WeightsError):
    """A checkpoint's content differs from the digest written when it was saved."""

    def __init__(self, changed: list[str], path: str | os.PathLike | None = None) -> None:
        self.changed = changed
        self.path = path
        what = ", ".join(changed)
        where = f"checkpoint {path}" if path is not None else "the checkpoint"
        super().__init__(
            f"{where} is damaged: its {what} does not match the {ALGORITHM} digest written when it was saved "
            "(changed on disk, in a copy or by an edit), so it was not loaded; use an intact copy, e.g. another "
            "checkpoint of the run (best-*.ckpt, last.ckpt)"
        )

    def at(self, path: str | os.PathLike) -> DigestMismatch:
        """The same error naming ``path`` (for loaders that learn the file name later)."""
        return DigestMismatch(self.changed, path)


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


def content_digest(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """``{"algorithm": "sha256", "parts": {key: hex digest}}`` of every top-level entry but the digest itself."""
    parts = {str(key): part_digest(value) for key, value in checkpoint.items() if key != DIGEST_KEY}
    return {"algorithm": ALGORITHM, "parts": parts}


def with_digest(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``checkpoint`` with its digest added (what :class:`AtomicCheckpointIO` saves)."""
    content = {k: v for k, v in checkpoint.items() if k != DIGEST_KEY}
    return {**content, DIGEST_KEY: content_digest(content)}


def verify_digest(checkpoint: Mapping[str, Any], path: str | os.PathLike | None = None) -> bool:
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


__all__ = ["ALGORITHM", "DIGEST_KEY", "DigestMismatch", "content_digest", "part_digest", "verify_digest", "with_digest"]
