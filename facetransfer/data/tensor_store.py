"""Decode every image once into a uint8 tensor store, in RAM or on the GPU (all of LFW at 256 px is 2.6 GB),
so that each epoch is a gather plus batched augmentation instead of JPEG decoding in workers::

    >>> store = TensorStore.build(source, items, side=256, face_crop=0.6, device="cuda")  # doctest: +SKIP
    >>> store.images.shape, store.images.dtype  # doctest: +SKIP
    (torch.Size([13233, 3, 256, 256]), torch.uint8)

On CUDA, JPEGs are decoded in batches by ``torchvision.io.decode_jpeg(device="cuda")``
(nvJPEG); other formats, JPEGs whose EXIF orientation turns them and any JPEG nvJPEG refuses (e.g.
CMYK) go through PIL, which reads them upright.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import ExifTags, Image
from torchvision.transforms.v2.functional import center_crop, pil_to_tensor

from ..preprocess import FaceCrop
from .sources import FaceSource

_JPEG = (".jpg", ".jpeg")


def _square(image: torch.Tensor, side: int, face_crop: float) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, side, side) uint8: central face crop, resize shorter side, center crop."""
    image = FaceCrop(face_crop)(image)
    h, w = image.shape[-2:]
    scale = side / min(h, w)
    size = [max(side, round(h * scale)), max(side, round(w * scale))]
    x = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return center_crop(x[0], [side, side]).round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class TensorStore:
    """``images`` (N, 3, S, S) uint8 and ``labels`` (N,) int64 on one device, in item order."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @classmethod
    def build(cls, source: FaceSource, items: Sequence[tuple[str, int]], *, side: int, face_crop: float = 1.0,
              device: torch.device | str = "cpu", chunk: int = 256) -> TensorStore:
        device = torch.device(device)
        images = torch.empty((len(items), 3, side, side), dtype=torch.uint8, device=device)
        keys = [k for k, _ in items]
        use_nvjpeg = device.type == "cuda" and source.root is not None and source.opens_files_as_they_are
        with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
            for start in range(0, len(keys), chunk):
                part = keys[start : start + chunk]
                decoded: dict[int, torch.Tensor | None] = {}
                if use_nvjpeg:
                    jpeg_idx = [i for i, k in enumerate(part) if k.lower().endswith(_JPEG)]
                    datas = list(pool.map(lambda k: _read_bytes(source, k), [part[i] for i in jpeg_idx]))
                    upright = [j for j, data in enumerate(datas) if not _turned_by_exif(data)]  # nvJPEG ignores EXIF
                    decoded.update(zip([jpeg_idx[j] for j in upright], _decode_jpegs_cuda([datas[j] for j in upright])))
                missing = [i for i in range(len(part)) if decoded.get(i) is None]  # not JPEG, or refused by nvJPEG
                pil = pool.map(lambda k: pil_to_tensor(source.open(k)), [part[i] for i in missing])
                decoded.update(zip(missing, pil))
                for i in range(len(part)):
                    images[start + i] = _square(decoded[i].to(device, non_blocking=True), side, face_crop)
        labels = torch.tensor([label for _, label in items], dtype=torch.long, device=device)
        return cls(images, labels)


def _read_bytes(source: FaceSource, key: str) -> torch.Tensor:
    with open(source.path(key), "rb") as fh:
        return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)


def _turned_by_exif(data: torch.Tensor) -> bool:
    """Whether a JPEG's EXIF orientation asks for a turn or a mirror (PIL decodes those, upright)."""
    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as img:  # reads the header only
            return img.getexif().get(ExifTags.Base.Orientation, 1) != 1
    except Exception:  # noqa: BLE001 - a damaged file goes to PIL, whose reader names the problem
        return True


def _decode_jpegs_cuda(datas: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """Batch-decode on the GPU; an image nvJPEG cannot decode comes back as ``None`` (PIL takes it)."""
    if not datas:
        return []
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device="cuda"))
    except RuntimeError:
        out: list[torch.Tensor | None] = []
        for data in datas:
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda"))
            except RuntimeError:
                out.append(None)
        return out
