"""From any photo to an aligned face chip: detect (once, cached), pick one face, warp.

An image without a face is a :class:`NoFaceError`, never a silent centre crop (docs/alignment.md)::

    >>> aligner = Aligner("mtcnn", template="dlib")  # doctest: +SKIP
    >>> prepared = aligner.prepare(paths, progress=True)  # detect a whole dataset once  # doctest: +SKIP
    >>> aligner.align("photos/alice/1.jpg").size  # doctest: +SKIP
    (150, 150)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Union

import torch
from PIL import Image

from ..errors import ConfigError, DataError
from ..io.images import decode_image, read_image_bytes, to_rgb
from .cache import CACHE_FILENAME, LandmarkCache, content_hash, default_cache_dir, pixels_hash
from .detector import Detections, FaceDetector, ImageInput, image_to_tensor, same_size_groups
from .landmarks import LandmarkTable
from .registry import get_detector
from .templates import FaceTemplate, get_template
from .transform import similarity_transform, warp_faces

AlignInput = Union[str, os.PathLike, Image.Image, torch.Tensor]
#: images larger than this (pixels) are warped one at a time instead of in a stacked batch
_BATCH_WARP_PIXELS = 1024 * 1024
#: which face of a group photo to align (see :func:`pick_face`)
PICK_POLICIES = ("largest_central", "largest", "central")


def pick_face(faces: Detections, image_size: tuple[int, int], policy: str = "largest_central") -> int:
    """Index of the face the policy picks among several.

    - ``largest``: the largest box;
    - ``central``: the box whose centre is nearest the image centre;
    - ``largest_central``: the largest box once its distance from the centre is counted against it:
      ``area - 2 * distance**2`` (pixels; the rule insightface uses). A photo's subject is usually large *and*
      central; a bigger face at the edge loses to it.

    >>> boxes = torch.tensor([[0., 0, 100, 100], [120, 120, 200, 200]])
    >>> faces = Detections(boxes, torch.zeros(2, 5, 2), torch.ones(2))
    >>> [pick_face(faces, (320, 320), p) for p in ("largest", "central", "largest_central")]
    [0, 1, 1]
    """
    if len(faces) == 0:
        raise ValueError("no faces to pick from")
    if policy not in PICK_POLICIES:
        raise ConfigError(f"unknown face pick policy {policy!r}; known: {', '.join(PICK_POLICIES)}")
    boxes = faces.boxes.float()
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    centre = torch.tensor(image_size, dtype=torch.float32, device=boxes.device) / 2
    distance2 = ((boxes[:, :2] + boxes[:, 2:]) / 2 - centre).pow(2).sum(dim=1)
    if policy == "largest":
        return int(area.argmax())
    if policy == "central":
        return int(distance2.argmin())
    return int((area - 2 * distance2).argmax())


class NoFaceError(DataError):
    """No face was found (or listed) in an image; callers apply their ``on_bad_image`` policy."""


@dataclass(frozen=True)
class FaceLocation:
    """The face an :class:`Aligner` chose in one image.

    Attributes:
        faces: how many faces were found.
        index: the chosen one's index among them (detector order: best score first).
        box: ``(4,)`` ``x1, y1, x2, y2``; landmarks: ``(5, 2)``; score: its confidence.
        image_size: ``(width, height)`` of the image the coordinates refer to.
    """

    faces: int
    index: int
    box: torch.Tensor
    landmarks: torch.Tensor
    score: float
    image_size: tuple[int, int]


@dataclass
class AlignedImage:
    """One result of :meth:`Aligner.align_files`: the chip, or why there is none."""

    path: str
    image: Image.Image | None = None
    location: FaceLocation | None = None
    error: DataError | None = None


@dataclass
class Prepared:
    """What :meth:`Aligner.prepare` found: detections per readable path, reasons for the others."""

    faces: dict[str, Detections] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    def faceless(self) -> list[str]:
        """Readable paths in which no face was found."""
        return [p for p, f in self.faces.items() if len(f) == 0]


class Aligner:
    """Detect (once), pick one face, and warp it onto a five-point template.

    Args:
        detector: a registered detector name (``mtcnn``), a :class:`FaceDetector`, or ``None``
            when ``landmarks`` gives every image's points.
        template: ``dlib`` (150 px, dlib's face chips), ``arcface`` (112 px) or a :class:`FaceTemplate`.
        size: output side in pixels (default: the template's own); the template is scaled.
        landmarks: a dataset's own landmarks (e.g. CelebA's), used before the detector.
        pick: which face when there are several: ``largest_central`` (default), ``largest`` or
            ``central`` (see :func:`pick_face`).
        cache: ``"default"`` (``~/.cache/facetransfer/landmarks.sqlite``), a file path, a
            :class:`LandmarkCache`, or ``None`` (in memory for this object only).
        device: where detection and warping run (default: CUDA when available).
        batch_size: images per detector call in :meth:`prepare` / :meth:`align_files`.
        detector_args: keyword arguments of the detector builder (``min_face_fraction`` ...).
        read_workers: threads decoding files ahead of the detector.
    """

    def __init__(
        self,
        detector: str | FaceDetector | None = "mtcnn",
        template: str | FaceTemplate = "dlib",
        size: int | None = None,
        *,
        landmarks: LandmarkTable | None = None,
        pick: Literal["largest_central", "largest", "central"] = "largest_central",
        cache: LandmarkCache | str | os.PathLike | None = "default",
        device: torch.device | str | None = None,
        batch_size: int = 16,
        detector_args: dict[str, Any] | None = None,
        read_workers: int = 2,
    ) -> None:
        if pick not in PICK_POLICIES:
            raise ConfigError(f"unknown face pick policy {pick!r}; known: {', '.join(PICK_POLICIES)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if detector is None and landmarks is None:
            raise ConfigError("an Aligner needs a detector (e.g. 'mtcnn') or a landmark table")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(detector, str):
            detector = get_detector(detector, device="cpu", **(detector_args or {}))
        elif detector_args:
            raise ConfigError("detector_args apply to a detector given by name")
        # DataLoader workers forked from a CUDA process cannot use CUDA: they detect and warp with a CPU twin
        twin = detector is not None and self.device.type != "cpu"
        self._cpu_detector: FaceDetector | None = copy.deepcopy(detector.to("cpu")) if twin else None
        self.detector: FaceDetector | None = detector.to(self.device) if detector is not None else None
        self.template = get_template(template, size)
        self.landmarks = landmarks
        self.pick = pick
        if cache == "default":
            cache = LandmarkCache(default_cache_dir() / CACHE_FILENAME)
        elif cache is not None and not isinstance(cache, LandmarkCache):
            cache = LandmarkCache(cache)
        self.cache: LandmarkCache | None = cache
        self.batch_size = batch_size
        self.read_workers = max(1, read_workers)
        self._memo: dict[str, Detections] = {}

    @property
    def size(self) -> int:
        return self.template.size

    def describe(self) -> dict[str, Any]:
        """What determines the chips (recorded in manifests and galleries)."""
        out: dict[str, Any] = {**self.template.describe(), "pick": self.pick}
        if self.detector is not None:
            out["detector"] = self.detector.cache_id()
            out["detector_config"] = self.detector.config()
        if self.landmarks is not None:
            out.update(self.landmarks.describe())
        return out

    def __getstate__(self) -> dict:
        """Pickled for spawned DataLoader workers: a CPU aligner (the CUDA detector stays in the parent)."""
        state = dict(self.__dict__)
        if self._cpu_detector is not None:
            state.update(detector=self._cpu_detector, _cpu_detector=None, device=torch.device("cpu"))
        return state

    def _in_forked_worker(self) -> bool:
        """Inside a DataLoader worker forked from a CUDA process, which cannot use CUDA: work with the CPU twin."""
        return self._cpu_detector is not None and torch.utils.data.get_worker_info() is not None

    def _listed(self, image: AlignInput, key: str | None = None) -> Detections | None:
        """The landmark table's faces of an image (by ``key``, else its path), or None."""
        key = key if key is not None else (os.fspath(image) if isinstance(image, (str, os.PathLike)) else None)
        return self.landmarks.lookup(key) if self.landmarks is not None and key is not None else None

    def _lookup(self, digests: Sequence[str]) -> dict[str, Detections]:
        """Detections already known (memory, then disk) for these content hashes."""
        missing = [d for d in digests if d not in self._memo]
        if missing and self.cache is not None and self.detector is not None:
            self._memo.update(self.cache.get_many(self.detector.cache_id(), missing))
        return {d: self._memo[d] for d in digests if d in self._memo}

    def _found(self, digests: Sequence[str], images: Sequence[ImageInput]) -> dict[str, Detections]:
        """Detections of these contents: remembered or cached, else detected now (once per distinct content)."""
        known = self._lookup(digests)
        todo = [(digest, image) for digest, image in dict(zip(digests, images)).items() if digest not in known]
        if self.detector is None:  # only a landmark table, which does not list these images: no face
            return {**known, **{digest: Detections.empty() for digest, _ in todo}}
        detector = self._cpu_detector if self._in_forked_worker() else self.detector
        found: dict[str, Detections] = {}
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            for (digest, _), faces in zip(batch, detector.detect([image for _, image in batch])):
                found[digest] = faces.rounded()  # as the cache stores them: chips do not depend on cache hits
        self._memo.update(found)
        if self.cache is not None:
            self.cache.put_many(self.detector.cache_id(), found)
        return {**known, **found}

    def _read(self, image: AlignInput) -> tuple[str, ImageInput, str | None]:
        """(content hash, decoded image, path or None) of any input."""
        if isinstance(image, (str, os.PathLike)):
            data = read_image_bytes(image)
            return content_hash(data), decode_image(data, os.fspath(image)), os.fspath(image)
        if isinstance(image, Image.Image):
            rgb = to_rgb(image)
            return pixels_hash(rgb), rgb, None
        if isinstance(image, torch.Tensor):
            tensor = image_to_tensor(image)
            return pixels_hash(tensor), tensor, None
        raise DataError(f"cannot align a {type(image).__name__}; give an image path, a PIL image or a uint8 tensor")

    def faces(self, image: AlignInput, key: str | None = None) -> Detections:
        """All faces of one image (landmark table, cache, or the detector), best first."""
        listed = self._listed(image, key)
        return listed if listed is not None else self._faces_and_image(image, key)[0]

    def locate(self, image: AlignInput, key: str | None = None) -> FaceLocation:
        """The face the policy picks; :class:`NoFaceError` when there is none."""
        return self._pick(*self._faces_and_image(image, key))

    def _faces_and_image(self, image: AlignInput, key: str | None) -> tuple[Detections, ImageInput, str]:
        digest, decoded, path = self._read(image)
        listed = self._listed(image, key)
        faces = listed if listed is not None else self._found([digest], [decoded])[digest]
        return faces, decoded, path or key or f"<{type(image).__name__}>"

    def _pick(self, faces: Detections, image: ImageInput, name: str) -> FaceLocation:
        """The face of ``image`` the policy picks; :class:`NoFaceError` naming ``name`` when there is none."""
        if len(faces) == 0:
            raise NoFaceError(self.no_face_message(name))
        size = image.size if isinstance(image, Image.Image) else (int(image.shape[-1]), int(image.shape[-2]))
        i = pick_face(faces, size, self.pick)
        return FaceLocation(len(faces), i, faces.boxes[i], faces.landmarks[i], float(faces.scores[i]), size)

    def no_face_message(self, name: str) -> str:
        """Why ``name`` has no chip: not listed in the landmark table, or no face found by the detector."""
        if self.detector is None and self.landmarks is not None:
            return f"{name} is not listed in the landmarks {self.landmarks.name} ({self.landmarks.source})"
        return f"no face found in {name} ({self.finder()})"

    def finder(self) -> str:
        """What finds the faces, for messages: ``detector mtcnn-v1-...`` / ``landmarks celeba-wild``."""
        landmarks = f"landmarks {self.landmarks.name}" if self.landmarks is not None else ""
        detector = f"detector {self.detector.cache_id()}" if self.detector is not None else ""
        return ", ".join(part for part in (landmarks, detector) if part)

    def warp(self, images: Sequence[ImageInput], landmarks: torch.Tensor) -> list[torch.Tensor]:
        """Chips (``uint8`` ``(3, size, size)``, on the device) of images with one face's ``(5, 2)`` landmarks each."""
        device = torch.device("cpu") if self._in_forked_worker() else self.device
        tensors = [image_to_tensor(im, device) for im in images]
        matrices = similarity_transform(landmarks.to(device), self.template.points.to(device))
        chips: dict[int, torch.Tensor] = {}
        for indices in same_size_groups(tensors, _BATCH_WARP_PIXELS):
            batch = torch.stack([tensors[i] for i in indices])
            chips.update(zip(indices, warp_faces(batch, matrices[indices], self.size)))
        return [chips[i] for i in range(len(tensors))]

    def align(self, image: AlignInput, key: str | None = None) -> Image.Image:
        """The aligned face chip of one image (PIL RGB, ``size`` x ``size``).

        Raises :class:`NoFaceError` when no face is found, :class:`DataError` for an unreadable file.
        """
        faces, decoded, name = self._faces_and_image(image, key)
        return _to_pil(self.warp([decoded], self._pick(faces, decoded, name).landmarks[None])[0])

    def prepare(
        self, paths: Sequence[str | os.PathLike], keys: Sequence[str] | None = None, progress: bool = False
    ) -> Prepared:
        """Detect faces in every file not yet cached, in batches; files are decoded in threads.

        ``keys`` (default: the paths) are looked up in the landmark table first. Returns the
        detections of every readable file and the reason for each unreadable one.
        """
        result = Prepared()
        for item in self._iter_detected(paths, keys, progress, keep_images=False, desc="detecting faces"):
            if item.error is not None:
                result.unreadable[item.path] = str(item.error)
            else:
                result.faces[item.path] = item.faces
        return result

    def align_files(
        self, paths: Sequence[str | os.PathLike], keys: Sequence[str] | None = None, progress: bool = False
    ) -> Iterator[AlignedImage]:
        """Aligned chips of many files, in order, batched; each result carries its chip or its error.

        Nothing is skipped silently: a file without a face yields a :class:`NoFaceError`, an
        unreadable one a :class:`DataError`.
        """
        pending: list[tuple[_Detected, FaceLocation]] = []

        def flush() -> Iterator[AlignedImage]:
            if pending:
                landmarks = torch.stack([loc.landmarks for _, loc in pending])
                chips = self.warp([item.image for item, _ in pending], landmarks)
                yield from (AlignedImage(item.path, _to_pil(chip), loc) for (item, loc), chip in zip(pending, chips))
                pending.clear()

        for item in self._iter_detected(paths, keys, progress, keep_images=True, desc="aligning faces"):
            try:
                if item.error is not None:
                    raise item.error
                pending.append((item, self._pick(item.faces, item.image, item.path)))
            except DataError as err:  # unreadable, or no face
                yield from flush()  # the results stay in order
                yield AlignedImage(item.path, error=err)
            else:
                if len(pending) >= self.batch_size:
                    yield from flush()
        yield from flush()

    def _iter_detected(
        self, paths: Sequence[str | os.PathLike], keys: Sequence[str] | None, progress: bool, keep_images: bool,
        desc: str,
    ) -> Iterator[_Detected]:
        """Each file's faces (and pixels, with ``keep_images``), in order; the next batch is read meanwhile."""
        from tqdm.auto import tqdm

        paths = [os.fspath(p) for p in paths]
        keys = list(keys) if keys is not None else paths
        if len(keys) != len(paths):
            raise ConfigError(f"got {len(paths)} paths but {len(keys)} keys")
        load = partial(self._load, keep_images=keep_images)
        with ThreadPoolExecutor(self.read_workers) as pool, tqdm(
            total=len(paths), desc=desc, unit="img", dynamic_ncols=True, disable=not progress
        ) as bar:
            for chunk in _prefetched(pool, load, list(zip(paths, keys)), self.batch_size):
                readable = [d for d in chunk if d.error is None and d.faces is None]
                known = self._found([d.digest for d in readable], [d.image for d in readable])
                for d in readable:
                    d.faces = known[d.digest]
                yield from chunk
                bar.update(len(chunk))

    def _load(self, item: tuple[str, str], keep_images: bool) -> _Detected:
        path, key = item
        listed = self._listed(path, key)
        try:
            data = read_image_bytes(path)
            digest = content_hash(data)
            # pixels are needed for chips, and for detection when neither the table nor a cache knows the image
            need_pixels = keep_images or (listed is None and digest not in self._lookup([digest]))
            image = decode_image(data, path) if need_pixels else None
        except DataError as err:
            return _Detected(path, error=err)
        return _Detected(path, digest=digest, image=image, faces=listed)


@dataclass
class _Detected:
    path: str
    digest: str = ""
    image: Image.Image | None = None
    faces: Detections | None = None
    error: DataError | None = None


def _prefetched(pool: ThreadPoolExecutor, load: Callable, items: list, chunk: int) -> Iterator[list]:
    """Chunks of ``load(item)`` results, the next chunk being loaded while the caller works on this one."""
    def submit(start: int) -> list[Future]:
        return [pool.submit(load, item) for item in items[start : start + chunk]]

    ahead = submit(0)
    for start in range(0, len(items), chunk):
        current, ahead = ahead, submit(start + chunk)
        yield [f.result() for f in current]


def _to_pil(chip: torch.Tensor) -> Image.Image:
    return Image.fromarray(chip.permute(1, 2, 0).contiguous().cpu().numpy(), "RGB")


__all__ = [
    "PICK_POLICIES", "AlignInput", "AlignedImage", "Aligner", "FaceLocation", "NoFaceError", "Prepared", "pick_face",
]
