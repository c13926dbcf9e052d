"""CelebA: the aligned-and-cropped release (``img_align_celeba/``) or the in-the-wild images (``img_celeba/``),
with ``identity_CelebA.txt``, in the original layout (annotations in ``Anno/``, ``Eval/`` or next to the images)
or torchvision's ``<root>/celeba/``. CelebA's official partition separates *identities* (it is for verification),
so identification uses all images by default; ``partition`` restricts to one part. The dataset's own five
landmarks (:meth:`CelebASource.landmark_points`) serve ``align: landmarks`` instead of a detector::

    >>> src = CelebASource("/data/celeba", partition="train")  # doctest: +SKIP
    >>> wild = CelebASource("/data/celeba", variant="wild")  # doctest: +SKIP
    >>> wild.landmark_points()["img_celeba/000001.jpg"]  # doctest: +SKIP
    [[165.5, 184.5], [244.5, 176.5], [196.5, 249.5], [194.5, 271.5], [266.5, 260.5]]
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, DataError
from ..io.images import is_listed_file
from .sources import FaceRecord, FaceSource, register_source

log = logging.getLogger(__name__)

PARTITIONS = {"train": "0", "val": "1", "test": "2"}
#: variant -> (image folder, landmark file)
VARIANTS = {
    "aligned": ("img_align_celeba", "list_landmarks_align_celeba.txt"),
    "wild": ("img_celeba", "list_landmarks_celeba.txt"),
}


@register_source("celeba")
class CelebASource(FaceSource):
    """CelebA identities (named by their numeric id) over the aligned 178x218 images or the
    in-the-wild ones (``variant="wild"``)."""

    name = "celeba"
    face_crop = 0.8  # CelebA's images hold the face in their central 80 % (see docs/reference.md)

    def __init__(self, root: str, partition: Literal["all", "train", "val", "test"] = "all",
                 variant: Literal["aligned", "wild"] = "aligned") -> None:
        super().__init__(root)
        if partition != "all" and partition not in PARTITIONS:
            raise ConfigError(f"unknown CelebA partition {partition!r}; known: all, {', '.join(PARTITIONS)}")
        if variant not in VARIANTS:
            raise ConfigError(f"unknown CelebA variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.partition = partition
        self.variant = variant

    def _base(self) -> Path:
        root = self._require_root()
        folder = VARIANTS[self.variant][0]
        for base in (root, root / "celeba"):
            if (base / folder).is_dir():
                return base
        raise DataError(f"no {folder}/ folder under {root} (or {root / 'celeba'})")

    @staticmethod
    def _find(base: Path, filename: str, needed_for: str) -> Path:
        """``filename`` in ``base`` or its ``Anno/`` / ``Eval/`` folder; a :class:`DataError` saying what needs it."""
        for folder in (base, base / "Anno", base / "Eval"):
            if (folder / filename).is_file():
                return folder / filename
        raise DataError(f"{filename} not found in {base}, {base / 'Anno'} or {base / 'Eval'}; {needed_for}")

    @staticmethod
    def _read_pairs(path: Path) -> dict[str, str]:
        table: dict[str, str] = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise DataError(f"{path}:{lineno}: expected '<image> <value>', got {line.strip()!r}")
            table[parts[0]] = parts[1]
        return table

    def records(self) -> list[FaceRecord]:
        base = self._base()
        identity_file = self._find(base, "identity_CelebA.txt", "it names the identity of each image")
        identities = self._read_pairs(identity_file)
        if self.partition != "all":
            partition_file = self._find(base, "list_eval_partition.txt", f"partition={self.partition!r} needs it")
            parts = self._read_pairs(partition_file)
            identities = {k: v for k, v in identities.items() if parts.get(k) == PARTITIONS[self.partition]}
        image_dir = base / VARIANTS[self.variant][0]
        on_disk = {e.name for e in os.scandir(image_dir) if is_listed_file(e)}
        missing = [k for k in identities if k not in on_disk]
        if missing:
            log.warning("%d images listed in %s are not in %s (partial copy), e.g. %s",
                        len(missing), identity_file, image_dir, missing[:3])
        prefix = os.path.relpath(image_dir, self.root)
        records = sorted(FaceRecord(ident, os.path.join(prefix, img)) for img, ident in identities.items() if img in on_disk)
        if not records:
            raise DataError(f"no CelebA images of {identity_file} found in {image_dir}")
        return records

    def init_args(self) -> dict:
        args: dict = {"partition": self.partition}
        if self.variant != "aligned":  # splits recorded before the wild variant existed stay identical
            args["variant"] = self.variant
        return args

    def landmark_file(self) -> Path:
        """The landmark file of this variant (``list_landmarks_celeba.txt`` / ``list_landmarks_align_celeba.txt``)."""
        return self._find(self._base(), VARIANTS[self.variant][1], "it holds CelebA's landmarks")

    def landmark_points(self) -> dict[str, list[list[float]]]:
        """The dataset's five landmarks of each image of this variant, keyed like :meth:`records`:
        left eye, right eye, nose, left and right mouth corner, ``[x, y]`` each.

        CelebA gives integer pixel indices; they become pixel centres (``+ 0.5``), the
        coordinates detectors use.
        """
        path = self.landmark_file()
        prefix = os.path.relpath(self._base() / VARIANTS[self.variant][0], self.root)
        points = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or (lineno <= 2 and (len(parts) == 1 or not parts[0].lower().endswith(".jpg"))):
                continue  # a blank line, the count line or the column header
            if len(parts) != 11 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
                raise DataError(f"{path}:{lineno}: expected '<image> x1 y1 ... x5 y5' (10 integers), got {line.strip()!r}")
            values = [int(p) + 0.5 for p in parts[1:]]
            points[os.path.join(prefix, parts[0])] = [values[i : i + 2] for i in range(0, 10, 2)]
        return points
