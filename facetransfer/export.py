"""Ship a trained model outside Python and Lightning: ONNX or TorchScript, plus a JSON sidecar (docs/deploy.md).

The sidecar ``<file>.json`` says how to feed the graph and records the export's own parity check: the
exported file must agree with PyTorch within ``1e-4`` on real images, or nothing is written. ONNX needs
the ``export`` extra (``pip install 'facetransfer[export]'``)::

    >>> result = export_checkpoint("runs/.../best.ckpt", "face.onnx")  # doctest: +SKIP
    >>> result.metadata["parity"]["max_abs_diff"] <= 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from . import __version__
from .errors import ConfigError, DataError, WeightsError
from .features import weights_fingerprint
from .io.atomic import atomic_path, write_text_atomic
from .io.images import load_rgb, to_rgb
from .models.fusion import feature_module
from .preprocess import Preprocess

if TYPE_CHECKING:
    from torchvision.transforms import v2

    from .training.module import FaceClassifier

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
INPUT_NAME = "images"
#: largest allowed difference between the exported file's outputs and PyTorch's
TOLERANCE = 1e-4
#: images the export's parity check runs on
CHECK_IMAGES = 8
SIDECAR_FORMAT = "facetransfer.export"
SIDECAR_VERSION = 1


class InferenceGraph(nn.Module):
    """A model as exported: ``[0, 1]`` RGB batch -> normalised -> logits, or L2-normalised embeddings.

    BatchNorm is folded into the convolutions where ``torch.fx`` can trace the backbone (a
    smaller graph, the same numbers within float rounding).

    >>> from facetransfer import FaceClassifier
    >>> graph = InferenceGraph(FaceClassifier("scratch_cnn", class_names=["a", "b"]))
    >>> graph(torch.rand(2, 3, 112, 112)).shape
    torch.Size([2, 2])
    """

    def __init__(self, model: FaceClassifier, embeddings: bool = False) -> None:
        super().__init__()
        if not embeddings and not model.class_names:
            raise ConfigError("this model has no identity head; export it with embeddings=True (--embeddings)")
        self.features = feature_module(model.backbone.embedding_net())  # with the projection, if any
        self.head = None if embeddings else model.backbone.head
        pp = model.preprocess
        self.register_buffer("input_mean", torch.tensor(pp.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(pp.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.eval()

    @property
    def output_name(self) -> str:
        return "embeddings" if self.head is None else "logits"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features((images - self.input_mean) / self.input_std)
        if self.head is None:
            return F.normalize(features, dim=1)
        return self.head(features)


def unit_transform(preprocess: Preprocess, face_crop: float = 1.0) -> v2.Compose:
    """What the caller of an exported model does: PIL image -> float ``(3, H, W)`` in ``[0, 1]``
    (:meth:`Preprocess.eval_transform` without the normalisation)."""
    return preprocess.eval_transform(face_crop, normalize=False)


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of an exported file: ``face.onnx`` -> ``face.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of an exported file (give the exported file or the ``.json`` itself)."""
    path = Path(path)
    json_path = path if path.suffix == ".json" else sidecar_path(path)
    if not json_path.is_file():
        raise DataError(f"export sidecar {json_path} does not exist")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{json_path} is not a facetransfer export sidecar: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise DataError(f"{json_path} is not a facetransfer export sidecar")
    return meta


def resolve_format(out: str | os.PathLike, format: str | None) -> str:
    """``format`` checked, or guessed from ``out``'s suffix (``.onnx``; ``.pt``/``.ts``/``.torchscript``)."""
    if format is None:
        suffix = Path(out).suffix.lower()
        if suffix not in SUFFIXES:
            raise ConfigError(f"cannot tell the export format from {Path(out).name!r}; give --format onnx|torchscript "
                              f"or a name ending in {', '.join(SUFFIXES)}")
        return SUFFIXES[suffix]
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    return format


def _require_onnx() -> Any:
    """Import onnxruntime (and check the exporter's onnx/onnxscript), or explain how to install them."""
    try:
        import onnx  # noqa: F401 - needed by torch.onnx.export
        import onnxruntime
        import onnxscript  # noqa: F401 - needed by torch.onnx.export(dynamo=True)
    except ImportError as err:
        raise ConfigError(
            f"ONNX export needs the packages onnx, onnxscript and onnxruntime ({err}); "
            "install them with: pip install 'facetransfer[export]'"
        ) from None
    return onnxruntime


def generated_faces(count: int = CHECK_IMAGES) -> list[Image.Image]:
    """Rendered synthetic faces (facetransfer's generator), for a parity check without data."""
    from .data.synthetic import render_face

    return [render_face(11, identity, 0, image_size=128) for identity in range(count)]


def split_images(manifest: dict[str, Any] | None, count: int = CHECK_IMAGES) -> list[Image.Image]:
    """Up to ``count`` images of a stored split's test set (spread over it); ``[]`` if unreadable."""
    from .data.sources import get_source

    if not manifest or not manifest.get("test") or not manifest.get("source"):
        return []
    items, info = manifest["test"], manifest["source"]
    picked = items[:: max(1, len(items) // count)][:count]
    try:
        source = get_source(info["dataset"], root=info.get("root"), **(info.get("args") or {}))
        return [source.open(str(key)) for key, _ in picked]
    except (DataError, ConfigError, KeyError, TypeError, OSError):
        return []


def _runner(path: Path, format: str) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A function ``float32 array (N, 3, H, W) -> output array`` that runs the exported file, and its runtime."""
    if format == "onnx":
        ort = _require_onnx()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return (lambda x: session.run(None, {INPUT_NAME: x})[0]), f"onnxruntime {ort.__version__}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream; the format is still read
        module = torch.jit.load(str(path), map_location="cpu")
    return (lambda x: module(torch.from_numpy(x)).numpy()), f"torch.jit {torch.__version__}"


@torch.no_grad()
def check_parity(
    path: Path, format: str, model: FaceClassifier, batch: torch.Tensor, embeddings: bool
) -> dict[str, Any]:
    """Run the exported file on ``batch`` (whole, and its first image alone: the batch size is free)
    and compare with the model's own forward -> ``{"max_abs_diff", "batch_sizes", "passed", ...}``."""
    from torchvision.transforms.v2 import functional as TF

    run, runtime = _runner(path, format)
    normalised = TF.normalize(batch, list(model.preprocess.mean), list(model.preprocess.std))
    reference = (model.embed(normalised) if embeddings else model(normalised)).float().numpy()
    x = batch.numpy().astype(np.float32)
    diffs = [float(np.abs(run(x) - reference).max()), float(np.abs(run(x[:1]) - reference[:1]).max())]
    return {
        "passed": max(diffs) <= TOLERANCE,
        "max_abs_diff": max(diffs),
        "tolerance": TOLERANCE,
        "batch_sizes": [len(x), 1],
        "runtime": runtime,
        "reference": f"PyTorch {torch.__version__}",
    }


def _write_graph(graph: InferenceGraph, example: torch.Tensor, path: Path, format: str) -> dict[str, Any]:
    """Write ``graph`` to ``path``; returns format details for the sidecar."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' notes; torch.jit's deprecation; shape checks constant here
        if format == "onnx":
            _require_onnx()
            program = torch.onnx.export(
                graph, (example,), input_names=[INPUT_NAME], output_names=[graph.output_name], dynamo=True,
                dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}}, external_data=False, verbose=False,
            )
            program.save(str(path), external_data=False)
            return {"opset": int(program.model.opset_imports.get("", 0))}
        torch.jit.save(torch.jit.trace(graph, example, check_trace=False), str(path))
    return {}


@dataclass(frozen=True)
class ExportResult:
    """An exported model: its file, its JSON sidecar and the sidecar's content."""

    path: Path
    sidecar: Path
    metadata: dict[str, Any]


def export_model(
    model: FaceClassifier, out: str | os.PathLike, *, format: ExportFormat | None = None, embeddings: bool = False,
    face_crop: float = 1.0, check_images: Sequence[Image.Image | str | os.PathLike] | None = None,
    check_images_from: str | None = None, weights: str | None = None, checkpoint: str | os.PathLike | None = None,
) -> ExportResult:
    """Export ``model`` to ``out`` (+ ``out.json``), after checking that the file computes what PyTorch does.

    Args:
        model: a :class:`~facetransfer.FaceClassifier` (moved to the CPU, left in eval mode).
        out: the file to write; ``format`` defaults from its suffix (``.onnx``; ``.pt``, ``.ts``).
        embeddings: output L2-normalised embeddings instead of logits.
        face_crop: the central fraction of the image the caller keeps (recorded in the sidecar).
        check_images: images for the parity check (default: :data:`CHECK_IMAGES` generated faces).
        check_images_from: words saying where ``check_images`` come from (for the sidecar).
        weights: the pretrained weights' name for the sidecar (default: the model's ``weights``).
        checkpoint: the checkpoint the model came from (for the sidecar).

    Raises :class:`WeightsError` when the exported file disagrees with PyTorch by more than
    :data:`TOLERANCE` (nothing is written then).
    """
    out = Path(out)
    format = resolve_format(out, format)  # type: ignore[assignment]
    if out.is_dir():
        example = out / ("model.onnx" if format == "onnx" else "model.pt")
        raise ConfigError(f"--out {out} is a folder; give a file name such as {example}")
    model = model.cpu().eval()
    pp = model.preprocess
    if check_images is None:
        check_images, check_images_from = generated_faces(), "generated faces (facetransfer.data.synthetic)"
    transform = unit_transform(pp, face_crop)
    batch = torch.stack([transform(to_rgb(i) if isinstance(i, Image.Image) else load_rgb(i)) for i in check_images])
    graph = InferenceGraph(model, embeddings=embeddings)

    sidecar = sidecar_path(out)
    with atomic_path(out) as tmp:
        details = _write_graph(graph, batch, tmp, format)
        parity = check_parity(tmp, format, model, batch, embeddings)
        parity.update(images=len(batch), images_from=check_images_from or "given images")
        if not parity["passed"]:
            raise WeightsError(
                f"the {format} export of {checkpoint or model.backbone_name} differs from PyTorch by "
                f"{parity['max_abs_diff']:.3g} (> {TOLERANCE:g}) on {len(batch)} images; {out} was not written"
            )
        metadata = {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "file": out.name,
            "file_format": format,
            **details,
            "input_name": INPUT_NAME,
            "input": "float32 (N, 3, input_size, input_size) RGB in [0, 1]; N is free",
            "output_name": graph.output_name,
            "output": "L2-normalised embeddings (N, num_features)" if embeddings else "logits (N, classes); softmax gives probabilities",
            "classes": list(model.class_names or []),
            "input_size": int(pp.crop_size),
            "resize_size": int(pp.resize_size),
            "face_crop": float(face_crop),
            "preprocessing": "if face_crop < 1, keep the central square of side face_crop x the shorter side; "
            "resize so that the shorter side is resize_size (bilinear, antialiased); keep the central "
            "input_size x input_size; scale to [0, 1]; mean and std are applied inside the graph",
            "mean": [float(m) for m in pp.mean],
            "std": [float(s) for s in pp.std],
            "backbone": model.backbone_name,
            "weights": weights if weights is not None else model.hparams.get("weights"),
            "num_features": int(model.backbone.embedding_size),
            "weights_fingerprint": weights_fingerprint(model.backbone.embedding_net()),
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "parity": parity,
            "exported_with": {"torch": torch.__version__, "facetransfer": __version__},
        }
        write_text_atomic(sidecar, json.dumps(metadata, indent=2) + "\n")
    return ExportResult(out, sidecar, metadata)


def export_checkpoint(
    ckpt_path: str | os.PathLike, out: str | os.PathLike, *, format: ExportFormat | None = None,
    embeddings: bool = False, face_crop: float | None = None,
    check_images: Sequence[Image.Image | str | os.PathLike] | None = None,
) -> ExportResult:
    """Export a checkpoint's model (see :func:`export_model`).

    ``face_crop`` defaults to the one its training split recorded (else 1.0); the parity
    check runs on images of its test split when they can be read, else on generated faces.
    """
    from .training.module import load_model  # imports Lightning: not for 'export --help'

    model = load_model(ckpt_path)
    info = model.checkpoint_info
    if face_crop is None:
        face_crop = info.face_crop if info.face_crop is not None else 1.0
    images_from = "given images"
    if check_images is None:
        check_images, images_from = split_images(info.manifest), "the checkpoint's test split"
        if not check_images:
            check_images, images_from = generated_faces(), "generated faces (the test split's images are not readable)"
    return export_model(
        model, out, format=format, embeddings=embeddings, face_crop=face_crop, check_images=check_images,
        check_images_from=images_from, weights=info.weights_name, checkpoint=info.path,
    )


__all__ = [
    "ExportResult", "InferenceGraph", "check_parity", "export_checkpoint", "export_model", "read_sidecar",
    "sidecar_path", "unit_transform",
]
