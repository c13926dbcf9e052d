"""``mtcnn``: the multi-task cascaded face detector (Zhang, Zhang, Li & Qiao, 2016), built in.

P-Net slides a 12x12 window over an image pyramid and proposes boxes, R-Net re-scores 24x24 crops of
them, O-Net re-scores 48x48 crops and places the five landmarks; every stage runs batched over the images
on any device (docs/alignment.md). Weights: ``facetransfer weights import
facenet_pytorch-2.6.0-py3-none-any.whl`` (see :mod:`.mtcnn_weights`)::

    >>> detector = get_detector("mtcnn")  # doctest: +SKIP
    >>> faces = detector.detect([Image.open("Aaron_Peirsol_0001.jpg")])[0]  # doctest: +SKIP
    >>> faces.landmarks[0]  # doctest: +SKIP
    tensor([[104.6, 114.7], [145.3, 113.3], [126.4, 139.0], [107.4, 160.2], [143.2, 159.4]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import batched_nms, box_area, roi_align

from ..errors import ConfigError
from .detector import Detections, FaceDetector, ImageInput, as_image_list, image_to_tensor, same_size_groups
from .mtcnn_nets import ONet, PNet, RNet
from .mtcnn_weights import load_mtcnn_nets
from .registry import register_detector

PNET_WINDOW, PNET_STRIDE = 12, 2


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """Raw pixel values [0, 255] -> the nets' input scale (about [-1, 1]), channels-last.

    Channels-last halves the time of these small convolutions and pools on CPU.
    """
    return ((pixels - 127.5) * (1 / 128)).contiguous(memory_format=torch.channels_last)


def _apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Boxes ``(N, 4)`` ``x1, y1, x2, y2``: each side moved by its offset times the box's width (x) or height (y)."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def _square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """The square with the box's centre and its longer side.

    >>> _square_boxes(torch.tensor([[0.0, 0.0, 10.0, 20.0]]))
    tensor([[-5.,  0., 15., 20.]])
    """
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy suppression by *intersection over the smaller box* within each group, best first.

    Removes a small box lying mostly inside a better-scoring one (a second detection of
    part of a face), which IoU suppression keeps.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b, g = boxes[order], groups[order]
    top_left = torch.maximum(b[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area = box_area(b)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-6)
    suppress = ((overlap > threshold) & (g[:, None] == g[None, :])).triu(diagonal=1).cpu()  # i suppresses j > i
    keep = torch.ones(len(b), dtype=torch.bool)
    for i in range(len(b)):
        if keep[i]:
            keep &= ~suppress[i]
    return order[keep.to(order.device)]


@register_detector("mtcnn")
class MTCNN(FaceDetector):
    """MTCNN (P-Net/R-Net/O-Net cascade, 5 landmarks), pretrained weights from the facenet-pytorch wheel.

    Args:
        weights: ``"DEFAULT"`` loads the imported pretrained nets; ``None`` leaves them random (tests).
        device: where the nets run (images are moved there).
        min_face_size: smallest face searched, in pixels of the detection image ...
        min_face_fraction: ... or this fraction of its shorter side, whichever is larger
            (0.1: faces of 25 px and up in a 250 px image, 102 px in a 1024 px one). Portraits,
            LFW, CelebA and small groups need no less; lower it for crowds.
        thresholds: face-probability cut of P-Net, R-Net and O-Net.
        scale_factor: ratio between pyramid levels.
        max_side: images with a longer side are detected on a downscaled copy (speed, memory).
    """

    name = "mtcnn"
    version = "1"

    def __init__(
        self,
        weights: str | None = "DEFAULT",
        device: torch.device | str | None = None,
        min_face_size: float = 20.0,
        min_face_fraction: float = 0.1,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_side: int = 1024,
    ) -> None:
        super().__init__()
        if min_face_size < PNET_WINDOW:
            raise ConfigError(f"mtcnn: min_face_size must be >= {PNET_WINDOW} pixels, got {min_face_size}")
        if not 0 <= min_face_fraction < 1:
            raise ConfigError(f"mtcnn: min_face_fraction must be in [0, 1), got {min_face_fraction}")
        if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
            raise ConfigError(f"mtcnn: thresholds must be 3 probabilities in [0, 1), got {tuple(thresholds)}")
        if not 0.1 <= scale_factor < 1:
            raise ConfigError(f"mtcnn: scale_factor must be in [0.1, 1), got {scale_factor}")
        if max_side < 2 * PNET_WINDOW:
            raise ConfigError(f"mtcnn: max_side must be >= {2 * PNET_WINDOW}, got {max_side}")
        if weights is not None and weights.upper() != "DEFAULT":
            raise ConfigError(f"unknown weights {weights!r} for the mtcnn detector; known: DEFAULT, None")
        self.min_face_size = float(min_face_size)
        self.min_face_fraction = float(min_face_fraction)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = int(max_side)
        self.pretrained = weights is not None
        self.pnet, self.rnet, self.onet = load_mtcnn_nets() if self.pretrained else (PNet(), RNet(), ONet())
        self.requires_grad_(False).eval().to(device=device, memory_format=torch.channels_last)  # inference only

    def config(self) -> dict[str, Any]:
        return {"min_face_size": self.min_face_size, "min_face_fraction": self.min_face_fraction,
                "thresholds": list(self.thresholds), "scale_factor": self.scale_factor, "max_side": self.max_side,
                "pretrained": self.pretrained}

    @torch.inference_mode()
    def detect(self, images: ImageInput | Sequence[ImageInput]) -> list[Detections]:
        """Faces of each image, best first (coordinates in that image's pixels)."""
        inputs = [self._detection_input(im) for im in as_image_list(images)]
        results: dict[int, Detections] = {}
        for indices in same_size_groups([pixels for pixels, _ in inputs]):
            batch = torch.stack([inputs[i][0] for i in indices]).float()
            results.update((i, faces.scaled(1 / inputs[i][1])) for i, faces in zip(indices, self._detect_batch(batch)))
        return [results[i] for i in range(len(inputs))]

    def _detection_input(self, image: ImageInput) -> tuple[torch.Tensor, float]:
        """``uint8`` ``(3, h, w)`` on the device, reduced so that its longer side is at most ``max_side``,
        and the reduction factor."""
        width, height = image.size if isinstance(image, Image.Image) else (image.shape[-1], image.shape[-2])
        shrink = min(1.0, self.max_side / max(width, height))
        if shrink == 1.0:
            return image_to_tensor(image, self.device), 1.0
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        if isinstance(image, Image.Image):  # PIL reduces a large photo fastest, before it becomes a tensor
            reduced = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            return image_to_tensor(reduced, self.device), size[0] / width
        pixels = image_to_tensor(image, self.device)[None].float()
        reduced = F.interpolate(pixels, size=size[::-1], mode="bilinear", antialias=True, align_corners=False)
        return reduced[0].round().clamp(0, 255).to(torch.uint8), size[0] / width

    def pyramid_scales(self, height: int, width: int) -> list[float]:
        """Scale of each pyramid level for an image of this size (largest first).

        >>> MTCNN(weights=None).pyramid_scales(250, 250)[:2]
        [0.48, 0.3403]
        """
        shortest = min(height, width)
        min_face = max(self.min_face_size, self.min_face_fraction * shortest)
        scales, scale = [], PNET_WINDOW / min_face
        while shortest * scale >= PNET_WINDOW:
            scales.append(round(scale, 4))
            scale *= self.scale_factor
        return scales

    def _detect_batch(self, pixels: torch.Tensor) -> list[Detections]:
        """Same-size float images ``(B, 3, H, W)`` in [0, 255] -> detections per image."""
        boxes, scores, image_idx = self._propose(pixels)
        boxes, scores, image_idx, _ = self._refine(pixels, boxes, image_idx, stage=1)
        boxes, scores, image_idx, points = self._refine(pixels, boxes, image_idx, stage=2)
        order = scores.argsort(descending=True)
        per_image = [order[image_idx[order] == b] for b in range(pixels.shape[0])]  # best first
        return [Detections(boxes[i].float(), points[i].float(), scores[i].float()) for i in per_image]

    def _propose(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P-Net over the pyramid: candidate boxes, scores and image index, merged across levels."""
        height, width = pixels.shape[-2:]
        found = []
        scales = self.pyramid_scales(height, width)
        for level, scale in enumerate(scales):
            size = (math.ceil(height * scale), math.ceil(width * scale))
            level_pixels = F.interpolate(pixels, size=size, mode="area")
            prob, offsets = self.pnet(_normalise(level_pixels))
            hit = (prob >= self.thresholds[0]).nonzero()  # (K, 3): image, row, col
            if hit.numel() == 0:
                continue
            b, row, col = hit.unbind(1)
            sy, sx = size[0] / height, size[1] / width
            x1, y1 = col.float() * PNET_STRIDE / sx, row.float() * PNET_STRIDE / sy
            boxes = torch.stack([x1, y1, x1 + PNET_WINDOW / sx, y1 + PNET_WINDOW / sy], dim=1)
            boxes = _apply_offsets(boxes, offsets[b, :, row, col])
            score = prob[b, row, col]
            keep = batched_nms(boxes, score, b, 0.5)
            found.append((boxes[keep], score[keep], b[keep]))
        if not found:
            return pixels.new_zeros(0, 4), pixels.new_zeros(0), pixels.new_zeros(0, dtype=torch.long)
        boxes, scores, groups = (torch.cat(level) for level in zip(*found))
        keep = batched_nms(boxes, scores, groups, 0.7)
        return _square_boxes(boxes[keep]), scores[keep], groups[keep]

    def _refine(
        self, pixels: torch.Tensor, boxes: torch.Tensor, image_idx: torch.Tensor, stage: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """R-Net (stage 1) or O-Net (stage 2) on crops of the candidates."""
        net, side = (self.rnet, 24) if stage == 1 else (self.onet, 48)
        if boxes.shape[0] == 0:
            return boxes, boxes.new_zeros(0), image_idx, boxes.new_zeros(0, 5, 2)
        rois = torch.cat([image_idx[:, None].to(boxes.dtype), boxes], dim=1)
        crops = roi_align(pixels, rois, output_size=(side, side), spatial_scale=1.0, sampling_ratio=2, aligned=True)
        prob, offsets, *rest = net(_normalise(crops))
        keep = (prob >= self.thresholds[stage]).nonzero().squeeze(1)
        boxes, prob, offsets, image_idx = boxes[keep], prob[keep], offsets[keep], image_idx[keep]
        if stage == 1:
            keep = batched_nms(boxes, prob, image_idx, 0.7)
            boxes = _square_boxes(_apply_offsets(boxes[keep], offsets[keep]))
            return boxes, prob[keep], image_idx[keep], boxes.new_zeros(0, 5, 2)
        relative_points = rest[0][keep]
        points = boxes[:, None, :2] + relative_points * (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        boxes = _apply_offsets(boxes, offsets)
        keep = batched_nms(boxes, prob, image_idx, 0.7)
        keep = keep[_nms_min(boxes[keep], prob[keep], image_idx[keep], 0.7)]
        return boxes[keep], prob[keep], image_idx[keep], points[keep]


__all__ = ["MTCNN"]
