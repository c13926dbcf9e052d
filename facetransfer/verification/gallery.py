"""A face gallery: enroll known people, then name a probe face -- or say it is unknown.

A probe is scored against each enrolled identity by cosine similarity -- to its *template* (``match="mean"``: the
mean of the identity's L2-normalised embeddings, re-normalised) or to its most similar enrolled image
(``match="nearest"``) -- and named after the best one; below ``threshold`` it is *unknown* (open-set identification)::

    >>> gallery = Gallery(get_backbone("dlib_resnet", weights="FACE_API"), match="nearest")  # doctest: +SKIP
    >>> gallery.enroll_folder("staff/")  # staff/<name>/<image>  # doctest: +SKIP
    >>> gallery.calibrate(target_far=0.01)  # threshold from the enrolled images  # doctest: +SKIP
    >>> gallery.identify("door_camera.jpg")  # doctest: +SKIP
    Match(name='alice', score=0.93, nearest='alice')
    >>> gallery.save("staff.gallery")  # doctest: +SKIP
    >>> gallery = Gallery.load("staff.gallery", model)  # doctest: +SKIP

The file is a safetensors file, read without pickle (its fields: docs/verification.md); ``facetransfer gallery``
(enroll, identify, add, remove, show) uses it from the command line.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve
from torch import nn

from ..config_errors import CosineSimilarity, UnitFraction, check_ranges
from ..errors import ConfigError, DataError
from ..io.atomic import atomic_path
from ..io.images import identity_images
from .embedder import Embedder, ImageLike
from .metrics import best_threshold
from .templates import class_templates

FORMAT = "facetransfer.gallery"
#: 2: safetensors; 1: torch.save (still read)
VERSION = 2


@dataclass(frozen=True)
class Match:
    """The answer for one probe.

    Attributes:
        name: the identity, or None when the probe is unknown (score below the threshold).
        score: cosine similarity to the nearest identity's template.
        nearest: the nearest identity, even when rejected.
    """

    name: str | None
    score: float
    nearest: str

    @property
    def known(self) -> bool:
        return self.name is not None


def list_identity_images(
    root: str | os.PathLike, images_per_identity: int | None = None, identities: Iterable[str] | None = None
) -> dict[str, list[Path]]:
    """``<root>/<identity>/<image>`` -> {identity: its first ``images_per_identity`` image paths}, in natural
    order (:func:`~facetransfer.io.images.identity_images`), only ``identities`` when given."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"gallery folder {root} does not exist or is not a folder")
    wanted = None if identities is None else set(identities)
    found = {name: files[: images_per_identity or None] for name, files in identity_images(root).items()
             if wanted is None or name in wanted}
    missing = sorted((wanted or set()) - set(found))
    if missing:
        raise DataError(f"no image folder under {root} for identities {missing}")
    if not found:
        raise DataError(f"no identity folders with images under {root}; expected <root>/<identity>/<image>")
    return found


def default_model_source(model: nn.Module | Embedder) -> dict[str, Any] | None:
    """How to rebuild a :class:`~facetransfer.FaceClassifier` given by name (backbone, weights,
    input size), or None (a bare backbone, a ``class_path`` backbone, random weights)."""
    hparams = getattr(model, "hparams", None)
    backbone = hparams.get("backbone") if hparams is not None else None
    if not isinstance(backbone, str) or not (hparams.get("weights") or hparams.get("weights_path")):
        return None
    keys = ("backbone", "weights", "weights_path", "backbone_args", "input_size")
    return {key: hparams.get(key) for key in keys if hparams.get(key) is not None}


class Gallery:
    """Enrolled identities and their embeddings, with an open-set threshold.

    Args:
        model: a backbone, a :class:`~facetransfer.FaceClassifier` or an :class:`Embedder`.
        threshold: cosine similarity below which a probe is unknown; None: never unknown (closed set).
            :meth:`calibrate` chooses one from the enrolled images.
        match: ``mean`` compares a probe with each identity's template (mean embedding); ``nearest`` with each
            identity's most similar enrolled image (better when people are enrolled in varied poses, costs one
            comparison per enrolled image).
        embedder_args: :class:`Embedder`'s ``face_crop``, ``flip``, ``batch_size``, ``num_workers``, ``device``,
            ``align`` ... (ignored when ``model`` is an Embedder).

    Attributes saved with the gallery besides the embeddings:
        calibration: how :meth:`calibrate` chose ``threshold`` (``{"target_far": ...}``), or None when the threshold
            was set by hand.
        model_source: how to rebuild the model, e.g. ``{"backbone": "dlib_resnet", "weights":
            "FACE_API"}`` or ``{"ckpt_path": "/runs/.../best.ckpt"}`` (what ``facetransfer gallery identify`` uses);
            by default taken from a :class:`~facetransfer.FaceClassifier`'s hyperparameters, None for a bare backbone.
    """

    def __init__(self, model: nn.Module | Embedder, threshold: float | None = None, *,
                 match: Literal["mean", "nearest"] = "mean", **embedder_args: Any) -> None:
        self.embedder = model if isinstance(model, Embedder) else Embedder(model, **embedder_args)
        if not self.embedder.normalize:
            raise ConfigError("a gallery compares normalised embeddings by cosine similarity; give an Embedder with "
                              "normalize=True")
        if match not in ("mean", "nearest"):
            raise ConfigError(f"unknown gallery match {match!r}; known: mean, nearest")
        self.threshold = threshold
        self.match = match
        self.names: list[str] = []
        self.embeddings = torch.zeros(0, self.embedder.num_features)
        self.labels = torch.zeros(0, dtype=torch.long)
        self.sources: list[str] = []
        self.calibration: dict[str, Any] | None = None
        self.model_source: dict[str, Any] | None = default_model_source(model)

    @property
    def threshold(self) -> float | None:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        check_ranges({"threshold": value}, {"threshold": CosineSimilarity})  # a cosine similarity never exceeds 1
        self._threshold = None if value is None else float(value)

    # --- enrolment ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def counts(self) -> dict[str, int]:
        """Images enrolled per identity."""
        return {n: int(c) for n, c in zip(self.names, torch.bincount(self.labels, minlength=len(self.names)))}

    def add_embeddings(self, name: str, embeddings: torch.Tensor, sources: Sequence[str] | None = None) -> None:
        """Enroll precomputed (normalised) embeddings ``(N, D)`` under ``name``."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedder.num_features:
            raise DataError(f"embeddings must be (N, {self.embedder.num_features}) for this model, "
                            f"got {tuple(embeddings.shape)}")
        if len(embeddings) == 0:
            raise DataError(f"no images to enroll for {name!r}")
        if name not in self.names:
            self.names.append(name)
        label = self.names.index(name)
        self.embeddings = torch.cat([self.embeddings, F.normalize(embeddings.float().cpu(), dim=1)])
        self.labels = torch.cat([self.labels, torch.full((len(embeddings),), label, dtype=torch.long)])
        self.sources += list(sources) if sources is not None else [""] * len(embeddings)

    def enroll(self, name: str, images: ImageLike | Sequence[ImageLike]) -> None:
        """Add images (PIL, paths or tensors, see :class:`Embedder`) of one person; repeatable."""
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        paths = isinstance(images, (list, tuple)) and all(isinstance(x, (str, os.PathLike)) for x in images)
        self.add_embeddings(name, self.embedder(images), [str(x) for x in images] if paths else None)

    def enroll_folder(self, root: str | os.PathLike, images_per_identity: int | None = None,
                      identities: Iterable[str] | None = None, progress: bool = False) -> dict[str, int]:
        """Enroll every ``<root>/<identity>/`` folder (its first ``images_per_identity`` images, in natural
        order; a file already enrolled is left out) -> {identity: images enrolled}."""
        enrolled = {os.path.realpath(source) for source in self.sources if source}
        found = {name: [f for f in files if os.path.realpath(f) not in enrolled]
                 for name, files in list_identity_images(root, images_per_identity, identities).items()}
        found = {name: files for name, files in found.items() if files}
        embeddings = self.embedder.embed_files([p for files in found.values() for p in files], progress=progress)
        for (name, files), chunk in zip(found.items(), embeddings.split([len(files) for files in found.values()])):
            self.add_embeddings(name, chunk, [str(f) for f in files])
        return {name: len(files) for name, files in found.items()}

    def remove(self, name: str) -> None:
        """Forget an identity."""
        if name not in self.names:
            raise ConfigError(f"{name!r} is not enrolled; enrolled: {', '.join(self.names) or 'nobody'}")
        label = self.names.index(name)
        keep = self.labels != label
        self.sources = [s for s, k in zip(self.sources, keep.tolist()) if k]
        self.embeddings, labels = self.embeddings[keep], self.labels[keep]
        self.labels = labels - (labels > label).long()
        self.names.pop(label)

    # --- matching -----------------------------------------------------------------------------
    @property
    def templates(self) -> torch.Tensor:
        """``(identities, D)``: per identity the normalised mean of its normalised embeddings."""
        return class_templates(self.embeddings, self.labels, len(self.names))

    def _per_identity_max(self, scores: torch.Tensor) -> torch.Tensor:
        """``(N, enrolled images)`` -> ``(N, identities)``: the best score among each identity's images."""
        out = torch.full((len(scores), len(self.names)), -torch.inf, dtype=scores.dtype)
        return out.scatter_reduce(1, self.labels.expand(len(scores), -1), scores, reduce="amax")

    def similarities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of probe embeddings ``(N, D)`` to every identity -> ``(N, identities)``."""
        if not self.names:
            raise ConfigError("the gallery is empty: enroll identities first")
        probes = F.normalize(embeddings.float(), dim=1)
        if self.match == "nearest":
            return self._per_identity_max(probes @ self.embeddings.T)
        return probes @ self.templates.T

    def match_embeddings(self, embeddings: torch.Tensor) -> list[Match]:
        """Matches of precomputed probe embeddings."""
        scores, best = self.similarities(embeddings).max(dim=1)
        threshold = -np.inf if self.threshold is None else self.threshold
        return [Match(self.names[b] if s >= threshold else None, float(s), self.names[b])
                for s, b in zip(scores.tolist(), best.tolist())]

    def identify(self, image: ImageLike) -> Match:
        """The enrolled identity of one face image, or ``Match(name=None, ...)`` if unknown."""
        return self.identify_many([image])[0]

    def identify_many(self, images: Sequence[ImageLike]) -> list[Match]:
        """Matches of several probe images (PIL, paths or tensors)."""
        if images and all(isinstance(x, (str, os.PathLike)) for x in images):
            return self.match_embeddings(self.embedder.embed_files(list(images)))
        return self.match_embeddings(self.embedder(images))

    # --- threshold ----------------------------------------------------------------------------
    def leave_one_out_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores from the enrolled images alone -> (genuine, impostor).

        Genuine: each image against its own identity without that image (its template built from the others, or its
        other images; identities with >= 2 images). Impostor: each image's best score among the *other* identities --
        what it would score if its person were not enrolled.
        """
        counts = torch.bincount(self.labels, minlength=len(self.names))
        if len(self.names) < 2 or int((counts >= 2).sum()) == 0:
            raise ConfigError("choosing a threshold needs at least 2 identities and one with >= 2 enrolled images")
        has_rest = counts[self.labels] >= 2
        rows = torch.arange(len(self.labels))
        if self.match == "nearest":
            pairwise = self.embeddings @ self.embeddings.T
            pairwise[rows, rows] = -torch.inf  # an image does not match itself
            others = self._per_identity_max(pairwise)
            genuine = others[rows, self.labels][has_rest]
        else:
            sums = torch.zeros(len(self.names), self.embeddings.shape[1]).index_add_(0, self.labels, self.embeddings)
            own = sums[self.labels] - self.embeddings
            genuine = (F.normalize(own[has_rest], dim=1) * self.embeddings[has_rest]).sum(dim=1)
            others = self.embeddings @ F.normalize(sums, dim=1).T
        others[rows, self.labels] = -torch.inf
        impostor = others.max(dim=1).values
        return genuine.double().numpy(), impostor.double().numpy()

    def calibrate(self, target_far: float | None = None) -> float:
        """Choose and set ``threshold`` from :meth:`leave_one_out_scores`.

        ``target_far=None``: the threshold that best separates genuine from impostor scores
        (:func:`~.metrics.best_threshold`). Otherwise the lowest threshold at which at most that fraction of
        impostor scores is accepted.
        """
        check_ranges({"target_far": target_far}, {"target_far": UnitFraction})
        genuine, impostor = self.leave_one_out_scores()
        scores = np.concatenate([genuine, impostor])
        labels = np.concatenate([np.ones(len(genuine), np.int64), np.zeros(len(impostor), np.int64)])
        if target_far is None:
            threshold, _ = best_threshold(scores, labels)
        else:
            fpr, _, thresholds = roc_curve(labels, scores, drop_intermediate=False)
            threshold = float(thresholds[np.flatnonzero(fpr <= target_far)[-1]])
            if not np.isfinite(threshold):  # roc_curve's first cut (+inf): no impostor may pass
                threshold = float(impostor.max()) + 1e-6
        self.threshold = float(threshold)
        self.calibration = {"target_far": target_far, "genuine": len(genuine), "impostor": len(impostor)}
        return self.threshold

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the gallery (embeddings, names, threshold, model description) to one safetensors file, atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        meta = {"threshold": self.threshold, "match": self.match, "calibration": self.calibration,
                "model": self.embedder.describe(), "model_source": self.model_source}
        metadata = {"format": FORMAT, "version": str(VERSION), "names": json.dumps(list(self.names)),
                    "sources": json.dumps(list(self.sources)), "meta": json.dumps(meta)}
        tensors = {"embeddings": self.embeddings.float().contiguous(), "labels": self.labels.long().contiguous()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    @staticmethod
    def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
        """What a gallery file holds, without a model or its embeddings: ``names``, ``counts``,
        ``images``, ``threshold``, ``match``, ``calibration``, ``model`` (``Embedder.describe()``)
        and ``model_source`` (how to rebuild the model, or None)."""
        info = _read_file(Path(path))
        names, labels = info.pop("names"), info.pop("labels")
        counts = dict(zip(names, torch.bincount(labels, minlength=len(names)).tolist()))
        del info["embeddings"], info["sources"]
        return {"names": names, "counts": counts, "images": len(labels), **info}

    @classmethod
    def load(
        cls, path: str | os.PathLike, model: nn.Module | Embedder, strict: bool = True, **embedder_args: Any
    ) -> Gallery:
        """Read a saved gallery for ``model``; the saved face crop and flip are reused.

        The model must produce embeddings of the same size; with ``strict`` it must also be the same network with the
        same weights (``weights_fingerprint``), since embeddings of other weights are not comparable.
        """
        path = Path(path)
        info = _read_file(path)
        saved = info["model"]
        saved_args = {"face_crop": saved["face_crop"], "tta": saved.get("tta", "flip" if saved["flip"] else "none"),
                      "align": saved.get("align", "none"), "align_template": saved.get("align_template")}
        embedder = model if isinstance(model, Embedder) else Embedder(model, **{**saved_args, **embedder_args})
        if embedder.num_features != saved["num_features"]:
            raise ConfigError(f"{path} holds {saved['num_features']}-d embeddings of {saved['backbone']}; "
                              f"this model makes {embedder.num_features}-d embeddings")
        if strict:
            fingerprint = embedder.describe()["weights_fingerprint"]
            if fingerprint != saved["weights_fingerprint"]:
                raise ConfigError(
                    f"{path} was enrolled with other weights ({saved['backbone']}, fingerprint "
                    f"{saved['weights_fingerprint']}) than this model ({embedder.backbone_name}, {fingerprint}); "
                    "embeddings would not be comparable (strict=False to load anyway)"
                )
        gallery = cls(embedder, threshold=info["threshold"], match=info["match"])
        gallery.names, gallery.sources = info["names"], info["sources"]
        gallery.embeddings, gallery.labels = info["embeddings"].float(), info["labels"].long()
        gallery.calibration, gallery.model_source = info["calibration"], info["model_source"]
        return gallery


def _read_file(path: Path) -> dict[str, Any]:
    """A gallery file -> its ``embeddings``, ``labels``, ``names``, ``sources``, ``version`` and the header's
    ``threshold``, ``match``, ``calibration``, ``model`` and ``model_source`` (None or ``mean`` when absent).

    Safetensors (version 2) is parsed without pickle. Version 1 files (``torch.save`` zip
    archives of tensors and strings) are still read, with ``torch.load(weights_only=True)``.
    """
    if not path.is_file():
        raise DataError(f"gallery file {path} does not exist")
    try:
        zipped = zipfile.is_zipfile(path)  # version 1: a torch.save archive
        fields = torch.load(path, map_location="cpu", weights_only=True) if zipped else _safetensors_fields(path)
    except Exception as err:  # not a safetensors or torch file, a damaged one, or a pickle holding code objects
        raise DataError(f"{path} is not a facetransfer gallery file: {str(err).splitlines()[0]}") from None
    if not isinstance(fields, dict) or fields.get("format") != FORMAT:
        raise DataError(f"{path} is not a facetransfer gallery file")
    try:
        version = int(fields.get("version", 1))
        tensors = {key: fields[key] for key in ("embeddings", "labels")}
        data = {key: json.loads(fields[key]) if isinstance(fields[key], str) else fields[key]  # version 2: JSON text
                for key in ("names", "sources", "meta")}
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path} is a damaged facetransfer gallery file: {err}") from None
    if version > VERSION:
        raise DataError(f"{path} was written by a newer facetransfer (gallery format {version})")
    problem = _damage(tensors, data)
    if problem:
        raise DataError(f"{path} is a damaged facetransfer gallery file: {problem}")
    meta = data.pop("meta")
    settings = {"threshold": meta.get("threshold"), "match": meta.get("match", "mean"), "model": meta["model"],
                "calibration": meta.get("calibration"), "model_source": meta.get("model_source")}
    return {**tensors, **data, **settings, "version": version}


def _safetensors_fields(path: Path) -> dict[str, Any]:
    """The header's strings and the tensors of a safetensors file, in one mapping."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {**(f.metadata() or {}), **{key: f.get_tensor(key) for key in f.keys()}}


def _damage(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> str | None:
    """What is wrong with a gallery file's fields (a file is input: every field is checked), or None."""
    embeddings, labels, names, sources, meta = (tensors["embeddings"], tensors["labels"], data["names"],
                                                data["sources"], data["meta"])
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        return "it has no model description"
    needed = {"backbone": str, "num_features": int, "face_crop": (int, float), "flip": bool, "weights_fingerprint": str}
    missing = [key for key, kind in needed.items() if not isinstance(meta["model"].get(key), kind)]
    if missing:
        return f"its model description lacks {', '.join(missing)}"
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not isinstance(sources, list):
        return "its names and sources are not lists of strings"
    if embeddings.ndim != 2 or not embeddings.is_floating_point() or embeddings.shape[1] != meta["model"]["num_features"]:
        return f"embeddings of shape {tuple(embeddings.shape)} for a model of {meta['model']['num_features']} features"
    if labels.ndim != 1 or labels.is_floating_point() or not len(labels) == len(embeddings) == len(sources):
        return f"{len(embeddings)} embeddings, {labels.numel()} labels and {len(sources)} sources"
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(names):
        return f"labels outside 0..{len(names) - 1} (it names {len(names)} people)"
    threshold = meta.get("threshold")
    if threshold is not None and not (isinstance(threshold, (int, float)) and -1 <= threshold <= 1):
        return f"threshold {threshold!r} (a cosine similarity: -1..1, or null)"
    if meta.get("match", "mean") not in ("mean", "nearest"):
        return f"match {meta.get('match')!r} (mean or nearest)"
    return None


__all__ = ["Gallery", "Match", "list_identity_images"]
