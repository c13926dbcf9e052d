"""LFW pair lists (View 1's ``pairsDevTrain.txt`` / ``pairsDevTest.txt``, View 2's ``pairs.txt``) and the images they name.

View 1's header ``N`` announces N same-person lines ``name i j``, then N different-person lines
``name1 i name2 j``; View 2's ``S N`` (``10 300``) S such sets, set k being fold k of the official 10-fold protocol
(docs/verification.md). Image ``i`` of ``name`` is ``<image_dir>/<name>/<name>_<i:04d>.jpg``::

    >>> protocol = PairsProtocol.load("../shared/data/lfw-devtrain/pairsDevTrain.txt")  # doctest: +SKIP
    >>> len(protocol), protocol.num_same, protocol.official_folds  # doctest: +SKIP
    (2200, 1100, False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .lfw import LFWSource
from ..errors import DataError, listing


@dataclass(frozen=True)
class Pair:
    """One line of a pairs file: two LFW images and whether they show the same person.

    ``fold`` is the View 2 set the pair belongs to (0-based), or -1 for View 1 files.
    """

    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int = -1

    @property
    def key1(self) -> str:
        return lfw_key(self.name1, self.index1)

    @property
    def key2(self) -> str:
        return lfw_key(self.name2, self.index2)


def lfw_key(name: str, index: int) -> str:
    """Relative path of image ``index`` of ``name``.

    >>> lfw_key("Aaron_Peirsol", 1)
    'Aaron_Peirsol/Aaron_Peirsol_0001.jpg'
    """
    return f"{name}/{name}_{index:04d}.jpg"


def _parse_index(token: str, path: Path, lineno: int) -> int:
    if not token.isdigit() or int(token) < 1:
        raise DataError(f"{path}:{lineno}: image numbers must be positive integers, got {token!r}")
    return int(token)


def read_pairs(path: str | os.PathLike) -> tuple[list[Pair], bool]:
    """Parse a pairs file -> (pairs, official_folds); the format is told by the header.

    Raises :class:`DataError` naming the file and line when the file does not follow
    either format (wrong field count, too few lines, bad numbers).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file {path} does not exist")
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1)]
    lines = [(n, parts) for n, parts in lines if parts]
    if not lines:
        raise DataError(f"pairs file {path} is empty")
    header_no, header = lines[0]
    if len(header) == 1 and header[0].isdigit():
        sets, per_set, official = 1, int(header[0]), False
    elif len(header) == 2 and all(h.isdigit() for h in header):
        sets, per_set, official = int(header[0]), int(header[1]), True
    else:
        raise DataError(f"{path}:{header_no}: expected a header 'N' (View 1, e.g. pairsDevTrain.txt) or "
                        f"'SETS N' (View 2 pairs.txt, e.g. '10 300'), got {' '.join(header)!r}")
    if sets < 1 or per_set < 1:
        raise DataError(f"{path}:{header_no}: the header announces no pairs ({' '.join(header)!r})")
    body = lines[1:]
    expected = 2 * sets * per_set
    if len(body) != expected:
        raise DataError(f"{path}: the header {' '.join(header)!r} announces {expected} pair lines "
                        f"({sets} x ({per_set} same + {per_set} different)), the file has {len(body)}")
    pairs: list[Pair] = []
    for i, (lineno, parts) in enumerate(body):
        same = (i % (2 * per_set)) < per_set  # each set: per_set same-person lines, then per_set different
        if len(parts) != (3 if same else 4):
            line = "a same-person line 'name i j'" if same else "a different-person line 'name1 i name2 j'"
            raise DataError(f"{path}:{lineno}: expected {line}, got {' '.join(parts)!r}")
        name1, a, name2, b = (parts[0], parts[1], parts[0], parts[2]) if same else parts
        fold = i // (2 * per_set) if official else -1
        pairs.append(Pair(name1, _parse_index(a, path, lineno), name2, _parse_index(b, path, lineno), same, fold))
    return pairs, official


@dataclass
class PairsProtocol:
    """The pairs of one file and where their images are.

    Args:
        pairs: the pairs, in file order.
        official_folds: True for View 2 files (each pair's ``fold`` is its set).
        image_dir: the folder holding ``<Name>/<Name>_NNNN.jpg``.
        path: the pairs file.
    """

    pairs: list[Pair]
    official_folds: bool
    image_dir: Path
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike | None = None) -> PairsProtocol:
        """Read ``path`` and find its images under ``root`` (default: the pairs file's folder).

        Every image the file names must exist; otherwise one :class:`DataError` lists the missing ones.
        """
        path = Path(path)
        pairs, official = read_pairs(path)
        image_dir = LFWSource(str(root if root is not None else path.parent)).image_dir()  # any LFW alignment there
        protocol = cls(pairs, official, image_dir, path)
        protocol.check_images()
        return protocol

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def num_same(self) -> int:
        return sum(p.same for p in self.pairs)

    @property
    def labels(self) -> np.ndarray:
        """1 for same-person pairs, 0 for different, in file order."""
        return np.array([int(p.same) for p in self.pairs], dtype=np.int64)

    @property
    def folds(self) -> np.ndarray | None:
        """The official fold of each pair (View 2), or None (View 1: see :func:`~.metrics.assign_folds`)."""
        return np.array([p.fold for p in self.pairs], dtype=np.int64) if self.official_folds else None

    def image_keys(self) -> list[str]:
        """The distinct images the pairs name (relative to ``image_dir``), sorted."""
        return sorted({k for p in self.pairs for k in (p.key1, p.key2)})

    def check_images(self) -> None:
        """Raise one :class:`DataError` listing every image named by the pairs but not on disk."""
        missing = [k for k in self.image_keys() if not (self.image_dir / k).is_file()]
        if missing:
            where = f" {self.path}" if self.path else ""
            raise DataError(f"{len(missing)} image(s) named in the pairs file{where} are missing under "
                            f"{self.image_dir}:\n" + listing([str(self.image_dir / k) for k in missing]))


__all__ = ["Pair", "PairsProtocol", "lfw_key", "read_pairs"]
