"""CelebA, aligned-and-cropped release: ``img_align_celeba/`` + ``identity_CelebA.txt``.

Both the original Google-Drive layout (annotation files in ``Anno/`` and ``Eval/``
or next to the images) and torchvision's ``<root>/celeba/`` layout are found.
CelebA's official partition separates *identities* (it is for verification), so
identification uses all images by default; ``partition`` restricts to one part::

    >>> src = CelebASource("/data/celeba", partition="train")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, DataError
from .sources import FaceRecord, FaceSource, is_listed_file, register_source

log = logging.getLogger(__name__)

PARTITIONS = {"train": "0", "val": "1", "test": "2"}


@register_source("celeba")
class CelebASource(FaceSource):
    """CelebA identities (named by their numeric id) over the aligned 178x218 images."""

    name = "celeba"

    def __init__(self, root: str, partition: Literal["all", "train", "val", "test"] = "all") -> None:
        super().__init__(root)
        if partition != "all" and partition not in PARTITIONS:
            raise ConfigError(f"unknown CelebA partition {partition!r}; known: all, {', '.join(PARTITIONS)}")
        self.partition = partition

    def _base(self) -> Path:
        root = self._require_root()
        for base in (root, root / "celeba"):
            if (base / "img_align_celeba").is_dir():
                return base
        raise DataError(f"no img_align_celeba/ folder under {root} (or {root / 'celeba'})")

    @staticmethod
    def _find(base: Path, filename: str) -> Path | None:
        for folder in (base, base / "Anno", base / "Eval"):
            if (folder / filename).is_file():
                return folder / filename
        return None

    @staticmethod
    def _read_pairs(path: Path) -> dict[str, str]:
        table: dict[str, str] = {}
        with open(path) as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise DataError(f"{path}:{lineno}: expected '<image> <value>', got {line.strip()!r}")
                table[parts[0]] = parts[1]
        return table

    def records(self) -> list[FaceRecord]:
        base = self._base()
        identity_file = self._find(base, "identity_CelebA.txt")
        if identity_file is None:
            raise DataError(f"identity_CelebA.txt not found in {base}, {base / 'Anno'}")
        identities = self._read_pairs(identity_file)
        if self.partition != "all":
            partition_file = self._find(base, "list_eval_partition.txt")
            if partition_file is None:
                raise DataError(f"partition={self.partition!r} needs list_eval_partition.txt in {base} or {base / 'Eval'}")
            wanted = PARTITIONS[self.partition]
            parts = self._read_pairs(partition_file)
            identities = {k: v for k, v in identities.items() if parts.get(k) == wanted}
        image_dir = base / "img_align_celeba"
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
        return {"partition": self.partition}
