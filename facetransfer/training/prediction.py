"""Predictions that report: a table of names and probabilities, and ``predictions.csv`` next to the run.

:class:`PredictionReport` is a Lightning prediction writer: at the end of ``predict`` it prints each image with
its decision and its ``top_k`` most probable identities, and writes one CSV row per image and rank (``path, rank,
identity, probability, decision``) into the run's log folder (``trainer.log_dir``; without a logger ``default_root_dir``)::

    >>> report = PredictionReport(top_k=3, unknown_below=0.5)
    >>> trainer = ft.make_trainer(callbacks=[report])  # doctest: +SKIP
    >>> trainer.predict(model, datamodule)  # doctest: +SKIP
    image        decision  prob   top 3
    s1/1.pgm     s1        0.982  s1 0.982, s7 0.010, s2 0.003
    s40/3.pgm    unknown   0.310  s12 0.310, s9 0.200, s1 0.100
    facetransfer: wrote 2 x 3 predictions to runs/lightning_logs/version_3/predictions.csv
    >>> report.csv_path  # doctest: +SKIP

Identities and probabilities are always the model's; with ``unknown_below`` the ``decision`` of an image whose top
probability is lower is ``unknown`` (else its rank-1 identity), in the table and in every CSV row of the image.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ..errors import ConfigError
from ..io.atomic import write_text_atomic

UNKNOWN = "unknown"
FILENAME = "predictions.csv"


@dataclass(frozen=True)
class ImagePrediction:
    """One image's ``top_k`` identities, best first, and the decision (the first, or ``unknown``)."""

    path: str
    names: list[str]
    probabilities: list[float]
    decision: str
    index: int


class PredictionReport(BasePredictionWriter):
    """Print a table and write ``predictions.csv`` at the end of ``trainer.predict`` (see the module docstring).

    Args:
        top_k: identities listed per image (at most the number of identities).
        unknown_below: decide ``unknown`` when the top probability is lower than this (None: never).
        filename: the CSV file's name in the log folder.
        max_printed: rows of the table printed (all of them go to the CSV).

    After ``predict``: ``predictions`` (a list of :class:`ImagePrediction`) and ``csv_path``.
    """

    def __init__(
        self, top_k: int = 5, unknown_below: float | None = None, filename: str = FILENAME, max_printed: int = 50
    ) -> None:
        super().__init__(write_interval="batch")
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        if unknown_below is not None and not 0 <= unknown_below <= 1:
            raise ConfigError(f"unknown_below is a probability in [0, 1], got {unknown_below}")
        if not filename or Path(filename).name != filename:
            raise ConfigError(f"filename must be a file name without a folder, got {filename!r}")
        self.top_k = top_k
        self.unknown_below = unknown_below
        self.filename = filename
        self.max_printed = max_printed
        self.predictions: list[ImagePrediction] = []
        self.csv_path: Path | None = None

    # --- collecting ------------------------------------------------------------------------------
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.predict_top_k = self.top_k  # read by FaceClassifier.predict_step
        self.predictions, self.csv_path = [], None

    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any, batch_indices: Sequence[int] | None,
        *_: Any,
    ) -> None:
        if not isinstance(prediction, dict) or "top_names" not in prediction:
            raise ConfigError(f"{type(self).__name__} needs predict_step to return top_names and top_probs (as "
                              f"FaceClassifier does); {type(pl_module).__name__} returned {type(prediction).__name__}")
        start, keys = len(self.predictions), prediction["key"]
        indices = list(batch_indices) if batch_indices is not None else range(start, start + len(keys))
        root = _image_root(trainer)
        for key, names, probs, index in zip(keys, prediction["top_names"], prediction["top_probs"].tolist(), indices):
            decision = UNKNOWN if self.unknown_below is not None and probs[0] < self.unknown_below else names[0]
            path = str(root / str(key)) if root is not None else str(key)
            self.predictions.append(ImagePrediction(path, list(names), [float(p) for p in probs], decision, index))

    # --- reporting -------------------------------------------------------------------------------
    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        predictions = _gather(self.predictions, trainer.world_size)
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # on every rank: log_dir is a collective
        if not trainer.is_global_zero:
            return
        self.predictions = sorted(predictions, key=lambda p: p.index)
        self.csv_path = write_text_atomic(folder / self.filename, self.csv_text())
        print(self.table())
        k = max((len(p.names) for p in self.predictions), default=0)
        print(f"facetransfer: wrote {len(self.predictions)} x {k} predictions to {self.csv_path}")

    def csv_text(self) -> str:
        """``path,rank,identity,probability,decision``: one row per image and rank."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "rank", "identity", "probability", "decision"])
        for p in self.predictions:
            for rank, (name, prob) in enumerate(zip(p.names, p.probabilities), start=1):
                writer.writerow([p.path, rank, name, f"{prob:.6f}", p.decision])
        return buffer.getvalue()

    def table(self) -> str:
        """The printed table: image, decision, the top probability and the top-k names with probabilities."""
        shown = self.predictions[: self.max_printed]
        if not shown:
            return "no images to predict"
        k = max(len(p.names) for p in shown)
        width = min(60, max(len("image"), *(len(p.path) for p in shown)))
        decision_width = max(len("decision"), *(len(p.decision) for p in shown))
        lines = [f"{'image':<{width}}  {'decision':<{decision_width}}  prob   top {k}"]
        for p in shown:
            path = p.path if len(p.path) <= width else "..." + p.path[-(width - 3):]
            top = ", ".join(f"{name} {prob:.3f}" for name, prob in zip(p.names, p.probabilities))
            lines.append(f"{path:<{width}}  {p.decision:<{decision_width}}  {p.probabilities[0]:.3f}  {top}")
        if len(self.predictions) > len(shown):
            lines.append(f"... and {len(self.predictions) - len(shown)} more images (all in {self.filename})")
        if self.unknown_below is not None:
            unknown = sum(p.decision == UNKNOWN for p in self.predictions)
            lines.append(f"{unknown} of {len(self.predictions)} images {UNKNOWN} (top probability below {self.unknown_below:g})")
        return "\n".join(lines)


def _image_root(trainer: L.Trainer) -> Path | None:
    """The folder the predicted keys are relative to: ``predict_root``, else the data source's root."""
    datamodule = getattr(trainer, "datamodule", None)
    root = getattr(datamodule, "predict_root", None) or getattr(getattr(datamodule, "source", None), "root", None)
    return Path(root) if root is not None else None


def _gather(predictions: list[ImagePrediction], world_size: int) -> list[ImagePrediction]:
    """Every process's predictions (each process predicted its share of the images)."""
    if world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return predictions
    parts: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(parts, predictions)
    return [p for part in parts for p in part]


__all__ = ["FILENAME", "UNKNOWN", "ImagePrediction", "PredictionReport"]
