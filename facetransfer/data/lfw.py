"""Labeled Faces in the Wild, as extracted from the LFW project's archives.

Any alignment works: ``<root>/<variant>/<Name>/<Name>_NNNN.jpg`` with variant ``lfw`` (original), ``lfw_funneled``
or ``lfw-deepfunneled`` (auto-detected), or ``root`` pointing at the variant folder itself. Partial copies are fine.
When the official protocol files sit next to the images, ``people="devtrain"`` / ``"devtest"`` restricts the
identities to View 1's lists::

    >>> src = LFWSource("../shared/data/lfw-devtrain", people="devtrain")  # doctest: +SKIP
    >>> len({r.identity for r in src.records()})  # doctest: +SKIP
    4038
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..errors import ConfigError, DataError
from .sources import FaceRecord, FaceSource, identity_records, register_source

VARIANTS = {
    "deepfunneled": ("lfw-deepfunneled", "lfw_deepfunneled"),
    "funneled": ("lfw_funneled", "lfw-funneled"),
    "original": ("lfw",),
}
PEOPLE_FILES = {"devtrain": "peopleDevTrain.txt", "devtest": "peopleDevTest.txt"}
#: the archive of each variant on the LFW site (installed as the first folder name of VARIANTS)
ARCHIVES = {"original": "lfw.zip", "funneled": "lfw-funneled.zip", "deepfunneled": "lfw-deepfunneled.zip"}
#: the list of all 5,749 names with their number of images
NAMES_FILE = "lfw-names.txt"


def read_name_counts(path: Path, header: bool = False) -> dict[str, int]:
    """``Name<TAB>count`` lines -> {name: count}: ``lfw-names.txt``, or with ``header`` (a count line first)
    ``peopleDevTrain.txt`` and the like."""
    counts: dict[str, int] = {}
    first_line = 2 if header else 1
    for lineno, line in enumerate(path.read_text().split("\n")[first_line - 1 :], first_line):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{path}:{lineno}: expected 'Name<TAB>count', got {line!r}")
        counts[parts[0]] = int(parts[1])
    return counts


@register_source("lfw")
class LFWSource(FaceSource):
    """LFW in any alignment, complete or partial.

    Args:
        root: folder holding the variant folder (and protocol files), or the variant folder.
        variant: ``auto`` picks deepfunneled, then funneled, then original, whichever exists.
        people: ``all`` identities on disk, or the official ``devtrain`` / ``devtest`` lists.
    """

    name = "lfw"
    face_crop = 0.6  # LFW's 250 px images hold the face in their central 60 % (see docs/reference.md)

    def __init__(self, root: str, variant: Literal["auto", "deepfunneled", "funneled", "original"] = "auto",
                 people: Literal["all", "devtrain", "devtest"] = "all") -> None:
        super().__init__(root)
        if variant != "auto" and variant not in VARIANTS:
            raise ConfigError(f"unknown LFW variant {variant!r}; known: auto, {', '.join(VARIANTS)}")
        if people not in ("all", *PEOPLE_FILES):
            raise ConfigError(f"unknown LFW people list {people!r}; known: all, {', '.join(PEOPLE_FILES)}")
        self.variant = variant
        self.people = people

    def image_dir(self) -> Path:
        """The folder holding ``<Name>/`` folders."""
        root = self._require_root()
        order = list(VARIANTS) if self.variant == "auto" else [self.variant]
        for variant in order:
            for dirname in VARIANTS[variant]:
                if (root / dirname).is_dir():
                    return root / dirname
        if any(p.is_dir() and any(p.glob(f"{p.name}_*")) for p in root.iterdir()):
            return root  # root is the variant folder itself
        wanted = ", ".join(d for v in order for d in VARIANTS[v])
        raise DataError(f"no LFW images under {root}: expected a folder named {wanted} holding <Name>/<Name>_0001.jpg")

    def records(self) -> list[FaceRecord]:
        image_dir = self.image_dir()
        records = identity_records(image_dir, self.root)
        if not records:
            raise DataError(f"no identity folders with images under {image_dir}")
        if self.people == "all":
            return records
        filename = PEOPLE_FILES[self.people]
        people_file = next((path for path in (self.root / filename, image_dir / filename, image_dir.parent / filename)
                            if path.is_file()), None)  # next to the images, or one level up
        if people_file is None:
            raise DataError(f"people={self.people!r} needs {filename} next to {image_dir}; it is not there")
        listed = read_name_counts(people_file, header=True)
        on_disk = {r.identity for r in records}
        missing = sorted(set(listed) - on_disk)
        if missing:
            raise DataError(f"{len(missing)} identities listed in {people_file} have no folder under {image_dir}, "
                            f"e.g. {missing[:5]}; use people: all for a partial copy")
        return [r for r in records if r.identity in listed]

    def init_args(self) -> dict:
        return {"variant": self.variant, "people": self.people}
