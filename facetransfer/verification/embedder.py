"""Face images -> L2-normalised embeddings, for projects that import facetransfer.

An :class:`Embedder` wraps a backbone (or a trained :class:`~facetransfer.FaceClassifier`)
with its eval transform and a central ``face_crop``. It takes PIL images, image files,
raw ``uint8`` tensors, or already-preprocessed float batches::

    >>> from PIL import Image
    >>> from facetransfer.models import get_backbone
    >>> embedder = Embedder(get_backbone("scratch_cnn"), face_crop=0.8)
    >>> embedder([Image.new("RGB", (92, 112)), Image.new("L", (64, 64))]).shape
    torch.Size([2, 256])

Cosine similarity of two embeddings is their dot product.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from jsonargparse.typing import PositiveInt
from PIL import Image
from torch import nn

from ..config_errors import FractionUpToOne, check_ranges
from ..errors import ConfigError, DataError
from ..features import ImageFiles, TTA, batch_features, file_features, weights_fingerprint
from ..io.images import load_rgb, to_rgb
from ..models.backbone import Backbone

ImageLike = Union[Image.Image, str, os.PathLike, torch.Tensor]
_NOT_AN_IMAGE = "cannot embed a {}; give PIL images, image paths, or (C, H, W) tensors"


def as_backbone(model: nn.Module) -> Backbone:
    """The embedding network (:meth:`Backbone.embedding_net`: with its projection, if any) of a backbone or of a
    module holding one as ``.backbone`` (FaceClassifier)."""
    backbone = model if isinstance(model, Backbone) else getattr(model, "backbone", None)
    if not isinstance(backbone, Backbone):
        raise ConfigError(f"expected a facetransfer Backbone or a FaceClassifier, got {type(model).__name__}")
    return backbone.embedding_net()


def make_aligner(align: Any, preprocess, template: str | None = None):
    """An :class:`~facetransfer.detection.Aligner` for ``align`` (a detector name or an Aligner), placing
    ``template`` (default: the backbone's own) where ``preprocess``'s eval transform keeps it; None for ``none``."""
    if align is None or align == "none":
        return None
    from ..detection import Aligner, list_detectors, template_for_input

    if isinstance(align, Aligner):
        return align
    if align not in list_detectors():
        raise ConfigError(f"unknown align {align!r}; known: none, {', '.join(list_detectors())}")
    return Aligner(align, template_for_input(preprocess, template))


class Embedder:
    """L2-normalised embeddings of face images with a backbone's features (or the raw features, ``normalize=False``).

    Args:
        model: a :class:`Backbone` or a :class:`~facetransfer.FaceClassifier` (its backbone is used).
        face_crop: central fraction of the image kept before resizing (as in :class:`~facetransfer.FaceDataModule`;
            LFW deep-funneled: see docs/verification.md).
        flip: also embed the horizontally flipped image and average: the same as ``tta="flip"``.
        batch_size: images per forward pass.
        num_workers: DataLoader workers for :meth:`embed_files`.
        device: where to run (default: where the model's parameters are).
        name: what to call the model in results and galleries (default: the FaceClassifier's backbone name, else the
            class name).
        align: ``none``, a face detector (``mtcnn``) or an :class:`~facetransfer.detection.Aligner`:
            images (paths, PIL, ``uint8`` tensors) are detected and aligned before the transform (detections cached on
            disk by file content; an image without a face is an error).
        align_template: ``dlib`` or ``arcface`` (default: the backbone's own).
        tta: test-time augmentation: ``none``, ``flip`` or ``jitter:N`` (N seeded random jitters of each image, as
            dlib's ``num_jitters``; N times the work), see :class:`~facetransfer.features.TTA`.
        normalize: scale each row to norm 1 (each view first, with ``tta``). ``False`` keeps the backbone's raw
            features and averages the views as they are (dlib's way): for Euclidean distances between descriptors,
            whose lengths then carry how well the views agree.

    Inputs of :meth:`__call__`: a PIL image, an image file path, a ``uint8`` tensor ``(C, H, W)`` / ``(B, C, H, W)``
    (raw pixels: transformed like PIL images), a float tensor ``(3, H, W)`` / ``(B, 3, H, W)`` (already preprocessed,
    used as is), or a list of these. Output: ``(N, num_features)`` float32 on the CPU, each row of norm 1 (unless
    ``normalize=False``).
    """

    def __init__(self, model: nn.Module, face_crop: float = 1.0, flip: bool = False, batch_size: int = 64,
                 num_workers: int = 0, device: torch.device | str | None = None, name: str | None = None,
                 align: Any = "none", align_template: str | None = None,
                 tta: str | TTA | None = None, normalize: bool = True) -> None:
        check_ranges({"face_crop": face_crop, "batch_size": batch_size},
                     {"face_crop": FractionUpToOne, "batch_size": PositiveInt})
        self.backbone = as_backbone(model)
        self.backbone_name = name or str(getattr(model, "backbone_name", type(self.backbone).__name__))
        self.face_crop = float(face_crop)
        self.tta = TTA.parse("flip" if flip else tta)
        if flip and tta is not None and TTA.parse(tta).kind == "jitter":
            raise ConfigError(f"flip=True means tta='flip'; give one of flip and tta={tta!r}")
        self.flip, self.batch_size, self.num_workers = self.tta.kind == "flip", batch_size, num_workers
        self.device = torch.device(device) if device is not None else next(self.backbone.parameters()).device
        self.transform = self.backbone.preprocess.eval_transform(self.face_crop)
        self.aligner = make_aligner(align, self.backbone.preprocess, align_template)
        self.align = "none" if self.aligner is None else (align if isinstance(align, str) else "custom")
        self.align_template = align_template
        self.normalize = bool(normalize)

    @property
    def num_features(self) -> int:
        return int(self.backbone.num_features)

    def describe(self) -> dict[str, Any]:
        """What determines the embeddings (stored with galleries and results)."""
        described = {"backbone": self.backbone_name, "num_features": self.num_features, "face_crop": self.face_crop,
                     "flip": self.flip, "tta": str(self.tta), "preprocess": self.backbone.preprocess.eval_dict(),
                     "weights_fingerprint": weights_fingerprint(self.backbone)}
        if not self.normalize:
            described["normalize"] = False
        if self.aligner is not None:
            described.update(align=self.align, align_template=self.align_template, alignment=self.aligner.describe())
        return described

    # --- preprocessed batches --------------------------------------------------------------------
    def embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed float images ``(B, 3, H, W)`` -> embeddings (CPU, float32; normalised unless not asked)."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise DataError(f"expected a preprocessed batch of shape (B, 3, H, W), got {tuple(batch.shape)}")
        return batch_features(self.backbone, batch.split(self.batch_size), **self._settings(many=False))

    def _settings(self, many: bool) -> dict[str, Any]:
        """How :func:`~facetransfer.features.batch_features` runs: normalised, views averaged; a pass over many
        images folds BatchNorm and runs channels-last where faster, a few images run on the backbone as it is."""
        return {"device": self.device, "normalize": self.normalize, "tta": self.tta, "fuse": many,
                "channels_last": None if many else False}

    # --- any image input -------------------------------------------------------------------------
    def preprocess(self, image: ImageLike) -> torch.Tensor:
        """One image (PIL, path or tensor) -> the preprocessed ``(3, H, W)`` float tensor."""
        if isinstance(image, torch.Tensor) and image.is_floating_point():  # already preprocessed: used as is
            if image.ndim != 3 or image.shape[0] != 3:
                raise DataError(f"an image tensor must be (C, H, W) with 1 or 3 channels (3 when preprocessed), "
                                f"got {tuple(image.shape)}")
            return image
        if self.aligner is not None:
            return self.transform(self.aligner.align(image))
        if isinstance(image, (str, os.PathLike)):
            return self.transform(load_rgb(image))
        if isinstance(image, Image.Image):
            return self.transform(to_rgb(image))
        if isinstance(image, torch.Tensor):
            from ..detection.detector import image_to_tensor  # the one check of raw pixels (imports torchvision)

            return self.transform(image_to_tensor(image).contiguous())
        raise DataError(_NOT_AN_IMAGE.format(type(image).__name__))

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """Embed one image or a list of images -> ``(N, num_features)``."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            if images.is_floating_point():
                return self.embed_batch(images)
            images = list(images)  # raw pixels: one (C, H, W) image each
        elif isinstance(images, (str, os.PathLike, Image.Image, torch.Tensor)):
            images = [images]
        if not isinstance(images, Sequence):
            raise DataError(_NOT_AN_IMAGE.format(type(images).__name__))
        return batch_features(self.backbone, self._stacked(list(images)), **self._settings(many=False))

    def _stacked(self, items: list[ImageLike]) -> Iterator[torch.Tensor]:
        """Batches of ``batch_size`` preprocessed images."""
        for start in range(0, len(items), self.batch_size):
            chunk = [self.preprocess(x) for x in items[start : start + self.batch_size]]
            shapes = {tuple(x.shape) for x in chunk}
            if len(shapes) > 1:
                raise DataError(f"preprocessed images differ in size: {sorted(shapes)}")
            yield torch.stack(chunk)

    def embed_files(self, paths: Sequence[str | os.PathLike], progress: bool = False) -> torch.Tensor:
        """Embed image files with a DataLoader (``num_workers``), in order.

        Every unreadable file is collected; one :class:`DataError` then lists them all.
        """
        paths = [Path(p) for p in paths]
        load = load_rgb
        if self.aligner is not None:
            self.aligner.prepare(paths, progress=progress)  # every face detected once, batched (and cached)
            load = self.aligner.align
        return file_features(self.backbone, ImageFiles(paths, self.transform, load), batch_size=self.batch_size,
                             num_workers=self.num_workers, progress=progress, **self._settings(many=True))


__all__ = ["Embedder", "ImageLike", "as_backbone", "make_aligner", "weights_fingerprint"]
