"""Pair lists in LFW's format (View 1's ``pairsDevTrain.txt`` / ``pairsDevTest.txt``, View 2's ``pairs.txt``):
reading them, making them for any folder of people, and the images they name.

View 1's header ``N`` announces N same-person lines ``name i j``, then N different-person lines
``name1 i name2 j``; View 2's ``S N`` (``10 300``) S such sets, set k being fold k of the official 10-fold protocol
(docs/verification.md). Image ``i`` of ``name`` is ``<image_dir>/<name>/<name>_<i:04d>.jpg`` in LFW's folders, and
the i-th image of ``<image_dir>/<name>/`` in natural order in any other (see :func:`numbered_images`)::

    >>> protocol = PairsProtocol.load("../shared/data/lfw-devtrain/pairsDevTrain.txt")  # doctest: +SKIP
    >>> len(protocol), protocol.num_same, protocol.official_folds  # doctest: +SKIP
    (2200, 1100, False)
    >>> pairs = make_pairs({"s1": 10, "s2": 10, "s3": 10}, same=20, different=20)
    >>> sum(p.same for p in pairs), len(pairs)
    (20, 40)
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, listing
from ..io.atomic import atomic_write
from ..io.images import identity_images
from .lfw import LFWSource


@dataclass(frozen=True, order=True)
class Pair:
    """One line of a pairs file: two numbered images and whether they show the same person.

    ``fold`` is the View 2 set the pair belongs to (0-based), or -1 for View 1 files. ``key1`` / ``key2``
    are the images' LFW names; :meth:`PairsProtocol.keys` finds them in any folder.
    """

    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int = -1

    @property
    def images(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """``(name, number)`` of its two images."""
        return (self.name1, self.index1), (self.name2, self.index2)

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


def numbered_images(name: str, images: Sequence[Path]) -> dict[int, Path]:
    """The images of ``name`` (in natural order, as :func:`~facetransfer.io.images.identity_images` lists them)
    by their number in a pairs file: LFW's ``NNNN`` when every file is ``<name>_NNNN.jpg``, else 1, 2, 3 ...

    >>> numbered_images("s1", [Path("s1/1.pgm"), Path("s1/2.pgm")])
    {1: PosixPath('s1/1.pgm'), 2: PosixPath('s1/2.pgm')}
    >>> numbered_images("Ann", [Path("Ann/Ann_0002.jpg"), Path("Ann/Ann_0005.jpg")])
    {2: PosixPath('Ann/Ann_0002.jpg'), 5: PosixPath('Ann/Ann_0005.jpg')}
    """
    pattern = re.compile(re.escape(name) + r"_(\d{4,})\.jpg")
    found = [pattern.fullmatch(path.name) for path in images]
    numbers = [int(m[1]) for m in found] if all(found) else range(1, len(images) + 1)
    return dict(zip(numbers, images))


def image_folder(root: str | os.PathLike) -> Path:
    """The folder of person folders under ``root``: LFW's image folder (any alignment, see
    :meth:`LFWSource.image_dir`), else ``root`` itself (``faces/alice/1.jpg``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    try:
        return LFWSource(str(root)).image_dir()
    except DataError:
        return root


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
        image_dir: the folder of person folders: LFW's ``<Name>/<Name>_NNNN.jpg`` or any ``<name>/<image>``.
        path: the pairs file.
    """

    pairs: list[Pair]
    official_folds: bool
    image_dir: Path
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike | None = None) -> PairsProtocol:
        """Read ``path`` and find its images under ``root`` (default: the pairs file's folder), an LFW folder or
        a folder of person folders (see :func:`image_folder`).

        Every image the file names must exist; otherwise one :class:`DataError` lists the missing ones.
        """
        path = Path(path)
        pairs, official = read_pairs(path)
        protocol = cls(pairs, official, image_folder(root if root is not None else path.parent), path)
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

    @cached_property
    def _people(self) -> dict[str, dict[int, str]]:
        """{name: {image number: key relative to image_dir}} of the people the pairs name."""
        named = {p.name1 for p in self.pairs} | {p.name2 for p in self.pairs}
        listed = identity_images(self.image_dir) if self.image_dir.is_dir() else {}
        return {name: {number: path.relative_to(self.image_dir).as_posix()
                       for number, path in numbered_images(name, listed.get(name, [])).items()} for name in named}

    def key(self, name: str, index: int) -> str:
        """Image ``index`` of ``name`` relative to ``image_dir`` (see :func:`numbered_images`); LFW's name
        for it when there is no such image."""
        return self._people[name].get(index) or lfw_key(name, index)

    def keys(self, pair: Pair) -> tuple[str, str]:
        """The two images of ``pair``, relative to ``image_dir``."""
        (name1, index1), (name2, index2) = pair.images
        return self.key(name1, index1), self.key(name2, index2)

    def image_keys(self) -> list[str]:
        """The distinct images the pairs name (relative to ``image_dir``), sorted."""
        return sorted({k for p in self.pairs for k in self.keys(p)})

    def check_images(self) -> None:
        """Raise one :class:`DataError` listing every image named by the pairs but not on disk."""
        missing = sorted({(name, i) for p in self.pairs for name, i in p.images if i not in self._people[name]},
                         key=lambda image: lfw_key(*image))
        if missing:
            where = f" {self.path}" if self.path else ""
            raise DataError(f"{len(missing)} image(s) named in the pairs file{where} are missing under "
                            f"{self.image_dir}:\n" + listing([self._missing(name, i) for name, i in missing]))

    def _missing(self, name: str, index: int) -> str:
        images = self._people[name]
        if not images or any(lfw_key(name, n) == key for n, key in images.items()):
            return str(self.image_dir / lfw_key(name, index))
        return f"{self.image_dir / name}: no image {index} (the folder holds {len(images)})"


def make_pairs(counts: Mapping[str, int], same: int, different: int, folds: int = 1, seed: int = 0) -> list[Pair]:
    """Draw a balanced pairs file's pairs: ``folds`` folds of ``same // folds`` same-person and as many
    different-person pairs, no pair twice and no image paired with itself.

    Args:
        counts: each person's number of images (numbered 1..n, see :func:`numbered_images`).
        same / different: the number of same-person and of different-person pairs; equal (as LFW's format needs)
            and a multiple of ``folds``.
        folds: 1 for a View 1 file (header ``N``), more for a View 2 file (header ``FOLDS N``) whose folds share no
            person, as LFW's 10 sets (people go to folds at random, largest first, to the fold with the fewest
            images).
        seed: the same inputs and seed give the same pairs (numpy's ``default_rng``).

    Each fold spreads its pairs as evenly as it can: same-person pairs over the people with 2+ images,
    different-person pairs over pairs of people. Not enough distinct pairs is a :class:`DataError` saying how
    many there can be.

    >>> [(p.name1, p.index1, p.name2, p.index2) for p in make_pairs({"a": 2, "b": 1}, same=1, different=1)]
    [('a', 1, 'a', 2), ('a', 2, 'b', 1)]
    """
    if same != different:
        raise ConfigError(f"same ({same}) and different ({different}) must be equal: a pairs file in LFW's format "
                          "holds as many same-person as different-person pairs in each fold")
    if folds < 1 or same < 1 or same % folds:
        raise ConfigError(f"{same} pairs of each kind do not split into {folds} folds of equal size; "
                          f"give a positive multiple of {folds}")
    names = sorted(name for name, n in counts.items() if n > 0)
    sizes = np.array([counts[name] for name in names], dtype=np.int64)
    rng = np.random.default_rng(seed)
    groups = _fold_people(sizes, folds, rng)
    per_fold = same // folds
    for kind, capacity in (("same-person", _same_capacity), ("different-person", _different_capacity)):
        smallest = min(capacity(sizes[g]) for g in groups)
        if smallest < per_fold:
            where = f"in {folds} person-disjoint folds ({smallest} in the smallest) of" if folds > 1 else "among"
            raise DataError(f"only {smallest * folds} distinct {kind} pairs are possible {where} {len(names)} "
                            f"people with {sizes.sum()} images; {same} asked")
    pairs: list[Pair] = []
    for k, group in enumerate(groups):
        people, fold = [names[g] for g in group], (k if folds > 1 else -1)
        pairs += sorted(_same_pairs(people, sizes[group], per_fold, fold, rng))
        pairs += sorted(_different_pairs(people, sizes[group], per_fold, fold, rng))
    return pairs


def write_pairs(pairs: Sequence[Pair], path: str | os.PathLike, folds: int = 1) -> Path:
    """Write ``pairs`` (as :func:`make_pairs` gives them) in LFW's format, atomically: header ``N`` for one
    fold, ``FOLDS N`` for more, then each fold's N same-person lines and N different-person lines.
    :func:`read_pairs` reads them back equal."""
    spaced = sorted({name for p in pairs for name in (p.name1, p.name2) if not name or name != name.split()[0]})
    if spaced:
        raise DataError(f"pairs files separate fields by spaces; rename the person folders {spaced[:5]}")
    groups = [[p for p in pairs if folds == 1 or p.fold == k] for k in range(folds)]
    per_fold = sum(p.same for p in groups[0])
    if sum(map(len, groups)) != len(pairs) or any(len(g) != 2 * per_fold or sum(p.same for p in g) != per_fold
                                                  for g in groups):
        raise ConfigError(f"{len(pairs)} pairs do not form {folds} fold(s) of N same-person and N different-person "
                          "pairs each")
    lines = [str(per_fold) if folds == 1 else f"{folds} {per_fold}"]
    for group in groups:
        lines += [f"{p.name1}\t{p.index1}\t{p.index2}" for p in group if p.same]
        lines += [f"{p.name1}\t{p.index1}\t{p.name2}\t{p.index2}" for p in group if not p.same]
    with atomic_write(path, what="pairs file") as fh:
        fh.write("\n".join(lines) + "\n")
    return Path(path)


def _fold_people(sizes: np.ndarray, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Person-disjoint folds: people in random order, largest first, each to the fold with the fewest images
    (then the lowest number); each fold's people sorted."""
    order = rng.permutation(len(sizes))
    order = order[np.argsort(-sizes[order], kind="stable")]
    heap = [(0, k) for k in range(folds)]
    members: list[list[int]] = [[] for _ in range(folds)]
    for person in order:
        images, k = heapq.heappop(heap)
        members[k].append(person)
        heapq.heappush(heap, (images + int(sizes[person]), k))
    return [np.sort(np.array(m, dtype=np.int64)) for m in members]


def _same_capacity(sizes: np.ndarray) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def _different_capacity(sizes: np.ndarray) -> int:
    return int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)


def _triangle(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the pairs ``i < j`` (in the order (0, 1), (0, 2), (1, 2), (0, 3) ...) -> (i, j).

    >>> _triangle(np.arange(4))
    (array([0, 0, 1, 0]), array([1, 2, 2, 3]))
    """
    flat = np.asarray(flat, dtype=np.int64)
    j = ((1 + np.sqrt(1 + 8 * flat.astype(np.float64))) // 2).astype(np.int64)
    j -= j * (j - 1) // 2 > flat  # float rounding near a row's start
    j += (j + 1) * j // 2 <= flat
    return flat - j * (j - 1) // 2, j


def _spread(capacity: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """How many of ``total`` draws each unit gets: as even as ``capacity`` allows, the remainder to random units.

    >>> _spread(np.array([1, 5, 5]), 7, np.random.default_rng(0))
    array([1, 3, 3])
    """
    lo, hi = 0, int(capacity.max(initial=0))
    while lo < hi:  # the lowest level whose capped sum reaches total
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if np.minimum(capacity, mid).sum() >= total else (mid + 1, hi)
    quota = np.minimum(capacity, max(lo - 1, 0))
    quota[rng.choice(np.flatnonzero(capacity >= lo), total - int(quota.sum()), replace=False)] += 1
    return quota


def _same_pairs(names: list[str], sizes: np.ndarray, count: int, fold: int, rng: np.random.Generator) -> list[Pair]:
    capacity = sizes * (sizes - 1) // 2
    pairs = []
    for person in np.flatnonzero(quota := _spread(capacity, count, rng)):
        first, second = _triangle(rng.choice(capacity[person], quota[person], replace=False))
        pairs += [Pair(names[person], int(i) + 1, names[person], int(j) + 1, True, fold) for i, j in zip(first, second)]
    return pairs


def _different_pairs(names: list[str], sizes: np.ndarray, count: int, fold: int,
                     rng: np.random.Generator) -> list[Pair]:
    units = len(sizes) * (len(sizes) - 1) // 2  # pairs of people
    if units >= count:  # one image pair for each of `count` random pairs of people
        a, b = _triangle(rng.choice(units, count, replace=False))
        quota = np.ones(count, dtype=np.int64)
    else:
        a, b = _triangle(np.arange(units))
        quota = _spread(sizes[a] * sizes[b], count, rng)
    pairs = []
    for u in np.flatnonzero(quota):
        picks = rng.choice(sizes[a[u]] * sizes[b[u]], quota[u], replace=False)
        pairs += [Pair(names[a[u]], int(f // sizes[b[u]]) + 1, names[b[u]], int(f % sizes[b[u]]) + 1, False, fold)
                  for f in picks]
    return pairs


__all__ = ["Pair", "PairsProtocol", "image_folder", "lfw_key", "make_pairs", "numbered_images", "read_pairs",
           "write_pairs"]
