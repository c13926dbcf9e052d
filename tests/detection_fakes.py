"""Test doubles for face detection: a scripted detector and synthetic images with known landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facetransfer.detection import Detections, FaceDetector, get_template

TEMPLATE = get_template("dlib")


class ScriptedDetector(FaceDetector):
    """Finds no face in flat images, two faces in 200 px wide ones (a big one at the edge and a central
    one), else one face whose landmarks are the dlib template scaled to the image. Counts its calls."""

    name = "scripted"
    version = "1"

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.offset = offset
        self.images_seen = 0

    def config(self):
        return {"offset": self.offset}

    def detect(self, images):
        out = []
        for im in images:
            self.images_seen += 1
            pixels = np.asarray(im) if isinstance(im, Image.Image) else im.permute(1, 2, 0).numpy()
            w, h = pixels.shape[1], pixels.shape[0]
            if pixels.std() == 0:
                out.append(Detections.empty())
                continue
            central = TEMPLATE.points * (w / 150) + self.offset
            faces = [(central, [0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h])]
            if w == 200:  # a larger face at the left edge, scored higher
                faces.insert(0, (central * 1.2 - torch.tensor([60.0, 0.0]), [-60.0, 10.0, 90.0, 190.0]))
            out.append(Detections(torch.tensor([b for _, b in faces]), torch.stack([p for p, _ in faces]),
                                  torch.tensor([0.99, 0.9][: len(faces)])))
        return out


def noise_image(path: Path, size=(120, 120), seed=0, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def dot_image(points: torch.Tensor, height: int, width: int, radius: float) -> torch.Tensor:
    """A black uint8 image with a white disc at each point."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    image = torch.zeros(height, width)
    for x, y in points.tolist():
        image[(xs - x) ** 2 + (ys - y) ** 2 <= radius**2] = 255
    return image.to(torch.uint8).expand(3, -1, -1).contiguous()


def blob_centres(chip: torch.Tensor, near: torch.Tensor, window: int = 9) -> torch.Tensor:
    """Intensity-weighted centre of the chip around each expected point."""
    grey = chip[0].float()
    centres = []
    for x, y in near.tolist():
        x0, y0 = max(0, int(x) - window), max(0, int(y) - window)
        patch = grey[y0 : int(y) + window, x0 : int(x) + window]
        ys, xs = torch.meshgrid(torch.arange(patch.shape[0]) + 0.5 + y0, torch.arange(patch.shape[1]) + 0.5 + x0,
                                indexing="ij")
        centres.append([float((patch * xs).sum() / patch.sum()), float((patch * ys).sum() / patch.sum())])
    return torch.tensor(centres)
