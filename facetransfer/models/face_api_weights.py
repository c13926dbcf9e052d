"""face-api's face recognition model (tfjs, uint8-quantised) -> :func:`~.dlib_resnet.dlib_resnet`'s state dict.

``@vladmandic/face-api`` ships dlib's face-descriptor ResNet as a TensorFlow.js weights manifest and a ``.bin`` buffer.
:func:`import_face_api_weights` checks the buffer's SHA-256, decodes it like ``tf.io.decodeWeights`` (de-quantising),
maps the tensors to this library's layout, checks the result's digest and writes it into torch's hub cache, where
``dlib_resnet(weights="FACE_API")`` finds it::

    npm pack @vladmandic/face-api@1.7.15
    facetransfer weights import vladmandic-face-api-1.7.15.tgz
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import posixpath
import tarfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WeightsError
from .dlib_resnet import FACE_API_VERSION, FILE_SHA256, HOW_TO_GET, WEIGHTS_FILENAME, dlib_resnet
from .verified_cache import check_sha256
from .weights import cache_verified, load_into, register_weights_file, register_weights_importer

__all__ = [
    "FACE_API_BIN_SHA256", "FACE_API_VERSION", "FILE_SHA256", "HOW_TO_GET", "STATE_SHA256", "WEIGHTS_FILENAME",
    "face_api_to_state_dict", "import_face_api_weights", "is_face_api_source", "read_tfjs_weights", "state_sha256",
]

log = logging.getLogger(__name__)

#: SHA-256 of ``model/face_recognition_model.bin`` in ``@vladmandic/face-api`` 1.7.15
FACE_API_BIN_SHA256 = "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"
_MANIFEST = "face_recognition_model-weights_manifest.json"
_BIN = "face_recognition_model.bin"
#: SHA-256 over the converted tensors (names, shapes, float32 bytes): checks the conversion itself
STATE_SHA256 = "1b8906920a1d5c2b10fdb79c29619f5598088aad1f35c51d2ee4c3e29fd1c537"
_SOURCE = f"@vladmandic/face-api {FACE_API_VERSION}: dlib face recognition ResNet (Davis King, CC0)"

_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "uint8": np.dtype("u1"), "uint16": np.dtype("<u2"),
           "float16": np.dtype("<f2")}


def read_tfjs_weights(specs: list[Mapping[str, Any]], data: bytes) -> dict[str, np.ndarray]:
    """Decode a tfjs weights buffer like ``tf.io.decodeWeights``: ``name -> float32 array``.

    ``specs`` are the manifest's ``weights`` entries in order; quantised tensors (``uint8`` / ``uint16``) become
    ``q * scale + min`` (computed in float64, rounded to float32, as tfjs does), ``float16`` ones are widened.
    """
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        name, shape = spec["name"], [int(d) for d in spec["shape"]]
        quant = spec.get("quantization")
        dtype = _DTYPES.get(quant["dtype"] if quant else spec["dtype"])
        if dtype is None or spec["dtype"] not in ("float32", "int32"):
            raise WeightsError(f"tfjs weight {name}: unsupported dtype {quant or spec['dtype']}")
        size = math.prod(shape) * dtype.itemsize
        if offset + size > len(data):
            raise WeightsError(f"tfjs weights end after {len(data)} bytes but {name} needs bytes up to {offset + size}")
        raw = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
        offset += size
        if quant and quant["dtype"] in ("uint8", "uint16"):
            values = (raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])).astype(np.float32)
        else:
            values = raw.astype(np.float32)
        out[name] = values.reshape(shape)
    if offset != len(data):
        raise WeightsError(f"tfjs weights buffer has {len(data) - offset} bytes left after the last tensor")
    return out


def _torch_key(tfjs_name: str) -> str:
    """``conv64_1/conv2/scale/weights`` -> ``stages.stage64.conv64_1.conv2.scale.weight``."""
    if tfjs_name == "fc":
        return "stages.embedding.fc.weight"
    block, *rest = tfjs_name.split("/")
    stage = "stem" if block == "conv32_down" else "stage" + block[4:].split("_")[0]
    leaf = {"filters": "weight", "bias": "bias", "weights": "weight", "biases": "bias"}[rest[-1]]
    return ".".join(["stages", stage, block, *rest[:-1], leaf])


def face_api_to_state_dict(tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """face-api's ``FaceRecognitionNet`` tensors -> this module's state dict.

    Conv filters go from tfjs HWIO to torch OIHW, the fc matrix ``(256, 128)`` is
    transposed to ``nn.Linear``'s ``(out, in)``; 1-d tensors are copied.
    """
    state: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        try:
            key = _torch_key(name)
        except (KeyError, ValueError, IndexError):
            raise WeightsError(f"unexpected tensor {name!r} in the face recognition model") from None
        t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        if t.ndim == 4:
            t = t.permute(3, 2, 0, 1)
        elif t.ndim == 2:
            t = t.t()
        state[key] = t.contiguous()
    return state


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A serialisation-independent digest: sorted names, shapes and float32 bytes."""
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to(torch.float32).contiguous()
        digest.update(f"{key}:{tuple(t.shape)};".encode())
        digest.update(t.numpy().astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def is_face_api_source(path: str | os.PathLike) -> bool:
    """True for what :func:`import_face_api_weights` takes: a ``.tgz``, a folder or the manifest."""
    p = Path(path)
    return _manifest_in(p) is not None if p.is_dir() else p.name.endswith((".tgz", ".tar.gz")) or p.name == _MANIFEST


def _manifest_in(folder: Path) -> Path | None:
    """The weights manifest of an unpacked npm package (in its ``model`` folder) or of a model folder."""
    return next((m for m in (folder / "model" / _MANIFEST, folder / _MANIFEST) if m.is_file()), None)


def _read_source(source: Path) -> tuple[list[dict[str, Any]], bytes, str]:
    """(weight specs, concatenated .bin bytes, a label for the .bin) from a tarball, folder or manifest."""
    if source.is_file() and source.name.endswith((".tgz", ".tar.gz")):
        try:
            with tarfile.open(source, "r:*") as tar:
                members = {posixpath.basename(m.name): m for m in tar.getmembers() if m.isfile()}
                if _MANIFEST not in members:
                    raise WeightsError(f"{source} holds no {_MANIFEST}; is it the @vladmandic/face-api npm package?")
                manifest = json.loads(tar.extractfile(members[_MANIFEST]).read())  # type: ignore[union-attr]
                paths = [p for group in manifest for p in group["paths"]]
                for p in paths:
                    if posixpath.basename(p) not in members:
                        raise WeightsError(f"{source} lacks {p}, named in its {_MANIFEST}")
                chunks = [tar.extractfile(members[posixpath.basename(p)]).read() for p in paths]  # type: ignore[union-attr]
        except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as err:
            raise WeightsError(f"cannot read the tfjs model in {source}: {err}") from None
        label = f"{source}:{'+'.join(paths)}"
    else:
        if not source.exists():
            raise WeightsError(f"{source} does not exist")
        manifest_path = _manifest_in(source) if source.is_dir() else source
        if manifest_path is None:
            raise WeightsError(f"{source} holds neither model/{_MANIFEST} nor {_MANIFEST}")
        try:
            manifest = json.loads(manifest_path.read_text())
            bins = [manifest_path.parent / p for g in manifest for p in g["paths"]]
            chunks = [b.read_bytes() for b in bins]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise WeightsError(f"cannot read the tfjs model {manifest_path}: {err}") from None
        label = "+".join(str(b) for b in bins)
    try:
        specs = [w for group in manifest for w in group["weights"]]
    except (KeyError, TypeError):
        raise WeightsError(f"{source}: {_MANIFEST} is not a tfjs weights manifest") from None
    return specs, b"".join(chunks), label


def import_face_api_weights(
    source: str | os.PathLike, force: bool = False, *, expected_sha256: str | None = FACE_API_BIN_SHA256
) -> Path:
    """Convert face-api's face recognition model into this module's state dict, in the hub cache.

    Args:
        source: the npm tarball (``vladmandic-face-api-1.7.15.tgz``), the unpacked
            package folder (or its ``model`` folder), or the weights-manifest ``.json``.
        force: rewrite the cached file even when it is already there.
        expected_sha256: digest the ``.bin`` must have (``None``: skip, for tests only).

    Returns ``hub_checkpoint_dir() / WEIGHTS_FILENAME`` (written atomically; with another ``expected_sha256``,
    ``dlib_resnet_face_api-<8 hex of the file's sha256>.pth``). Raises :class:`WeightsError` when the ``.bin`` is a
    different file, the manifest does not fit, or the conversion does not reproduce the known tensors.

    >>> import_face_api_weights("vladmandic-face-api-1.7.15.tgz")  # doctest: +SKIP
    PosixPath('/root/.cache/torch/hub/checkpoints/dlib_resnet_face_api-24d0677b.pth')
    """
    specs, data, label = _read_source(Path(source))
    if expected_sha256 is not None:
        check_sha256(data, expected_sha256, label, f"{_BIN} of @vladmandic/face-api {FACE_API_VERSION}")
    state = face_api_to_state_dict(read_tfjs_weights(specs, data))
    load_into(dlib_resnet(), state, what=f"face recognition model {label}", ignore_prefixes=("head.",))
    if expected_sha256 == FACE_API_BIN_SHA256 and state_sha256(state) != STATE_SHA256:
        raise WeightsError(f"converting {label} gave unexpected tensors (state sha256 {state_sha256(state)})")
    buffer = io.BytesIO()  # in memory: the archive name inside the zip does not depend on the file name
    torch.save(OrderedDict(sorted(state.items())), buffer)
    payload = buffer.getvalue()
    file_digest = hashlib.sha256(payload).hexdigest()
    name = WEIGHTS_FILENAME if expected_sha256 == FACE_API_BIN_SHA256 else f"dlib_resnet_face_api-{file_digest[:8]}.pth"
    if name == WEIGHTS_FILENAME and file_digest != FILE_SHA256:
        log.info("torch %s serialises %s differently (sha256 %s); the tensors are verified", torch.__version__,
                 name, file_digest)
    return cache_verified(name, file_digest, lambda fh: fh.write(payload), force)  # its tensors were checked above


register_weights_file(WEIGHTS_FILENAME, FILE_SHA256, _SOURCE)
register_weights_importer(is_face_api_source, import_face_api_weights)  # facetransfer weights import *.tgz
