"""Run the LFW pair-verification protocol with any backbone or trained model.

Every image the pairs name is embedded once (L2-normalised backbone features, optionally averaged over views of the
image: ``tta="flip"`` or ``"jitter:N"``); a pair's score is the cosine similarity of its two embeddings, optionally
after centring them on the mean embedding of the other folds' images (``score_norm="center"``). With
``distance="euclidean"`` the embeddings keep their length (views averaged as they are) and a pair's score is minus
the Euclidean distance between them, the comparison dlib's face network was trained for::

    >>> model = get_backbone("dlib_resnet", weights="FACE_API")  # doctest: +SKIP
    >>> result = evaluate_pairs(model, "../shared/data/lfw-devtrain/pairsDevTrain.txt",
    ...                         face_crop=0.6, out_dir="runs/verify")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    dlib_resnet on pairsDevTrain.txt (2200 pairs, 3443 images, face_crop 0.6): acc 0.9... ± ...

``out_dir`` receives ``roc.png``, ``metrics.json``, ``scores.tsv`` and a TensorBoard event file (scalars ``verify/*``
and the ROC figure).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.pairs import PairsProtocol
from ..errors import ConfigError
from .embedder import Embedder
from .metrics import VerificationMetrics, assign_folds, own_fold_scores, verification_metrics


@dataclass
class VerificationResult:
    """Metrics of one verification run and what produced them.

    Attributes:
        metrics: accuracy (k-fold mean ± std), AUC, TAR@FAR, thresholds, ROC.
        pairs_file / image_dir: the protocol's files.
        num_images: distinct images embedded.
        model: :meth:`Embedder.describe` (backbone, face crop, tta, weights fingerprint).
        score_norm: how pair scores were normalised (``none``, ``center``, ``asnorm``).
        distance: how embeddings were compared (``cosine``; ``euclidean``: scores are minus the distance).
        scores / labels: per pair, in file order.
        files: what was written to ``out_dir`` (``roc_png``, ``metrics_json``, ``scores_tsv``, ``tensorboard``).
    """

    metrics: VerificationMetrics
    pairs_file: str
    image_dir: str
    num_images: int
    model: dict[str, Any]
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    files: dict[str, str] = field(default_factory=dict)
    score_norm: str = "none"
    distance: str = "cosine"

    def summary(self) -> str:
        tta = self.model.get("tta", "flip" if self.model.get("flip") else "none")
        extras = ("" if tta == "none" else ", flip" if tta == "flip" else f", tta {tta}") + (
            "" if self.score_norm == "none" else f", score_norm {self.score_norm}") + (
            "" if self.distance == "cosine" else f", {self.distance} distance")
        return (
            f"{self.model.get('backbone')} on {Path(self.pairs_file).name} ({self.metrics.num_pairs} pairs, "
            f"{self.num_images} images, face_crop {self.model.get('face_crop')}{extras}): {self.metrics.summary()}"
        )

    def to_dict(self) -> dict[str, Any]:
        names = ("pairs_file", "image_dir", "num_images", "model", "score_norm", "distance", "metrics", "files")
        return {**{name: getattr(self, name) for name in names}, "metrics": self.metrics.to_dict()}

    def scalars(self, prefix: str = "verify/") -> dict[str, float]:
        """The headline numbers as ``{verify/acc, verify/acc_std, verify/auc, verify/tar@far1e-3}``."""
        return self.metrics.scalars(prefix)


def plot_roc(metrics: VerificationMetrics, title: str = ""):
    """The ROC curve as a matplotlib figure: linear axes, and TAR over a log-scaled FAR."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fpr, tpr = np.asarray(metrics.fpr), np.asarray(metrics.tpr)
    fig = Figure(figsize=(10, 4.5))
    lin, log = fig.subplots(1, 2)
    lin.plot(fpr, tpr, lw=1.5)
    lin.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    lin.set(xlabel="false accept rate", ylabel="true accept rate", xlim=(0, 1), ylim=(0, 1.01), title="ROC")
    lin.text(0.4, 0.1, f"AUC {metrics.auc:.4f}\nacc {metrics.accuracy:.4f} ± {metrics.accuracy_std:.4f}")
    positive = fpr > 0
    log.plot(fpr[positive], tpr[positive], lw=1.5)
    log.axvline(metrics.far, ls="--", c="grey", lw=1)
    log.plot([metrics.far], [metrics.tar], "o", c="C3", label=f"TAR@FAR={metrics.far:g}: {metrics.tar:.4f}")
    log.set(xscale="log", xlabel="false accept rate (log)", ylabel="true accept rate", ylim=(0, 1.01),
            title="ROC (log FAR)")
    log.legend(loc="lower right")
    for ax in (lin, log):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


SCORE_NORMS = ("none", "center", "asnorm")
#: how two embeddings are compared
DISTANCES = ("cosine", "euclidean")
#: AS-norm compares each image with its most similar cohort images, this many
ASNORM_TOP = 100


def check_scoring(score_norm: str, distance: str) -> None:
    """One clear error for an unknown ``score_norm`` or ``distance``, or a pointless combination of the two."""
    if score_norm not in SCORE_NORMS:
        raise ConfigError(f"unknown score_norm {score_norm!r}; known: {', '.join(SCORE_NORMS)}")
    if distance not in DISTANCES:
        raise ConfigError(f"unknown distance {distance!r}; known: {', '.join(DISTANCES)}")
    if distance == "euclidean" and score_norm == "center":
        raise ConfigError("score_norm='center' changes nothing with Euclidean distances; use none or asnorm")


def pair_scores(protocol: PairsProtocol, embeddings: torch.Tensor, keys: list[str], folds: np.ndarray | None = None,
                score_norm: str = "none", distance: str = "cosine") -> np.ndarray:
    """Similarity of each pair's embeddings of ``keys``: cosine (of normalised embeddings) or minus the Euclidean distance.

    With a ``score_norm`` (needs ``folds``), per test fold k the cohort is the images that only the other folds' pairs
    name (no image of fold k's pairs) -> ``(folds, pairs)``, row k for test fold k (as
    :func:`~.metrics.verification_metrics` takes them). ``center``: every embedding minus the cohort's mean,
    normalised again (cosine only: distances do not change when everything moves). ``asnorm`` (adaptive symmetric
    score normalisation): a pair's score standardised by the mean and standard deviation of each image's
    :data:`ASNORM_TOP` highest similarities to the cohort (itself left out), the two averaged.
    """
    check_scoring(score_norm, distance)
    index = {k: i for i, k in enumerate(keys)}
    keys1, keys2 = zip(*map(protocol.keys, protocol.pairs))
    first = torch.tensor([index[k] for k in keys1], dtype=torch.long)
    second = torch.tensor([index[k] for k in keys2], dtype=torch.long)

    def paired(vectors: torch.Tensor) -> np.ndarray:
        if distance == "euclidean":
            return -(vectors[first] - vectors[second]).norm(dim=1).double().numpy()
        return (vectors[first] * vectors[second]).sum(dim=1).double().numpy()

    if score_norm == "none":
        return paired(embeddings)
    if folds is None:
        raise ConfigError(f"score_norm={score_norm!r} needs the folds: its cohort is the other folds' images")
    rows = []
    for k in np.unique(folds):
        test = torch.from_numpy(np.asarray(folds) == k)
        training = torch.zeros(len(keys), dtype=torch.bool)
        training[first[~test]] = training[second[~test]] = True
        training[first[test]] = training[second[test]] = False  # an image of the test fold is never seen
        cohort = training.nonzero().squeeze(1)
        if score_norm == "center":
            rows.append(paired(F.normalize(embeddings - embeddings[cohort].mean(dim=0), dim=1)))
            continue
        if distance == "euclidean":
            similar = -torch.cdist(embeddings, embeddings[cohort])
        else:
            similar = embeddings @ embeddings[cohort].T
        similar[cohort, torch.arange(len(cohort))] = -torch.inf  # an image is not its own impostor
        top = similar.topk(min(ASNORM_TOP, len(cohort) - 1), dim=1).values
        mean, std = top.mean(dim=1).double().numpy(), top.std(dim=1).clamp(min=1e-6).double().numpy()
        raw, i, j = paired(embeddings), first.numpy(), second.numpy()
        rows.append(((raw - mean[i]) / std[i] + (raw - mean[j]) / std[j]) / 2)
    return np.stack(rows)


def evaluate_pairs(
    model: nn.Module | Embedder,
    pairs: str | os.PathLike | PairsProtocol,
    root: str | os.PathLike | None = None,
    *,
    face_crop: float = 1.0,
    flip: bool = False,
    tta: str | None = None,
    score_norm: str = "none",
    distance: str = "cosine",
    far: float = 1e-3,
    n_folds: int = 10,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    out_dir: str | os.PathLike | None = None,
    tensorboard: bool = True,
    progress: bool = False,
    name: str | None = None,
    align: str = "none",
    align_template: str | None = None,
) -> VerificationResult:
    """Verify the pairs of an LFW pairs file with a model's embeddings.

    Args:
        model: a :class:`~facetransfer.models.Backbone`, a :class:`~facetransfer.FaceClassifier` (its backbone's
            features; the identity head is not used) or an :class:`Embedder` (then the embedding options are its own).
        pairs: a pairs file (View 1 ``pairsDevTrain.txt``/``pairsDevTest.txt`` or View 2 ``pairs.txt``) or a loaded
            :class:`PairsProtocol`.
        root: the LFW folder (default: the pairs file's folder).
        far: the false accept rate of the TAR@FAR metric.
        n_folds: folds for files without official folds (View 2 always uses its 10 sets).
        out_dir: write ``roc.png``, ``metrics.json``, ``scores.tsv`` and TensorBoard events there.
        tensorboard: with ``out_dir``, also write the TensorBoard event file.
        score_norm: ``none`` (cosine similarity), ``center`` (each fold's pairs scored on embeddings centred on the
            mean embedding of the other folds' images) or ``asnorm`` (adaptive score normalisation against those
            images), see :func:`pair_scores`; no image of a fold is used to normalise its own scores.
        distance: ``cosine`` (of L2-normalised embeddings) or ``euclidean`` (between the raw embeddings, views of
            ``tta`` averaged as they are; scores are minus the distance). An :class:`Embedder` given as ``model``
            must normalise for ``cosine`` and not for ``euclidean``.
        face_crop / flip / tta / batch_size / num_workers / device / name / align / align_template: the embedding
            options, as in :class:`Embedder` (``face_crop``: of the 250 px LFW image).
    """
    protocol = pairs if isinstance(pairs, PairsProtocol) else PairsProtocol.load(pairs, root)
    check_scoring(score_norm, distance)
    embedder = model if isinstance(model, Embedder) else Embedder(
        model, face_crop=face_crop, flip=flip, batch_size=batch_size, num_workers=num_workers, device=device, name=name,
        align=align, align_template=align_template, tta=tta, normalize=distance == "cosine",
    )
    if embedder.normalize != (distance == "cosine"):
        raise ConfigError(f"distance={distance!r} needs an Embedder with normalize={distance == 'cosine'} "
                          f"(cosine compares normalised embeddings, euclidean the raw ones)")
    keys, labels = protocol.image_keys(), protocol.labels
    folds = protocol.folds if protocol.official_folds else assign_folds(labels, n_folds)
    embeddings = embedder.embed_files([protocol.image_dir / k for k in keys], progress=progress)
    scores = pair_scores(protocol, embeddings, keys, folds, score_norm, distance)
    metrics = verification_metrics(scores, labels, folds, far=far, official=protocol.official_folds)
    result = VerificationResult(metrics=metrics, pairs_file=str(protocol.path or ""), image_dir=str(protocol.image_dir),
                                num_images=len(keys), model=embedder.describe(), scores=own_fold_scores(scores, folds),
                                labels=labels, score_norm=score_norm, distance=distance)
    if out_dir is not None:
        write_outputs(result, protocol, Path(out_dir), tensorboard=tensorboard)
    return result


def write_outputs(result: VerificationResult, protocol: PairsProtocol, out_dir: Path, tensorboard: bool = True) -> None:
    """``roc.png``, ``metrics.json``, ``scores.tsv`` (and TensorBoard events) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, tsv, metrics_json = out_dir / "roc.png", out_dir / "scores.tsv", out_dir / "metrics.json"
    fig = plot_roc(result.metrics, title=result.summary().split(":")[0])
    fig.savefig(png, dpi=100)
    rows = [f"{p.name1}\t{p.index1}\t{p.name2}\t{p.index2}\t{int(p.same)}\t{p.fold}\t{s:.6f}\n"
            for p, s in zip(protocol.pairs, result.scores)]
    tsv.write_text("name1\timage1\tname2\timage2\tsame\tfold\tscore\n" + "".join(rows))
    result.files.update(roc_png=str(png), scores_tsv=str(tsv))
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(out_dir)) as writer:
            for name, value in result.scalars().items():
                writer.add_scalar(name, value, 0)
            writer.add_figure("verify/roc", fig, 0)
            for same, tag in ((False, "verify/hardest_false_accepts"), (True, "verify/hardest_false_rejects")):
                writer.add_figure(tag, hardest_pairs_figure(protocol, result.scores, same), 0)
        result.files["tensorboard"] = str(out_dir)
    result.files["metrics_json"] = str(metrics_json)
    metrics_json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def hardest_pairs_figure(protocol: PairsProtocol, scores: np.ndarray, same: bool, count: int = 8):
    """The ``count`` pairs of different people with the highest scores (``same=False``: the hardest false accepts),
    or of the same person with the lowest (the hardest false rejects), side by side with their scores."""
    from matplotlib.figure import Figure

    from ..io.images import load_rgb

    chosen = [i for i in np.argsort(scores if same else -scores) if protocol.pairs[i].same == same][:count]
    fig = Figure(figsize=(2.6, 1.4 * max(1, len(chosen))), dpi=100)
    for row, i in enumerate(chosen):
        pair = protocol.pairs[i]
        for col, key in enumerate(protocol.keys(pair)):
            ax = fig.add_subplot(len(chosen), 2, 2 * row + col + 1)
            ax.imshow(load_rgb(protocol.image_dir / key).resize((96, 96)))
            ax.set_title(f"{key.split('/')[-1][:-4]}" + (f"  {scores[i]:.3f}" if col else ""), fontsize=6)
            ax.axis("off")
    fig.suptitle(f"hardest {'false rejects (same person)' if same else 'false accepts (different people)'}",
                 fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["DISTANCES", "SCORE_NORMS", "VerificationResult", "evaluate_pairs", "hardest_pairs_figure", "pair_scores", "plot_roc", "write_outputs"]
