"""Pair-verification metrics: 10-fold accuracy, ROC AUC and TAR at a fixed FAR.

Scores are similarities (higher = more alike, e.g. cosine similarity of L2-normalised embeddings); labels are 1 for
same-person pairs. The LFW protocol's accuracy is cross-validated: for each fold, the threshold that maximises
accuracy on the other folds is applied to that fold; the result is the mean ± std over folds::

    >>> import numpy as np
    >>> scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1] * 5)
    >>> labels = np.array([1, 1, 1, 0, 0, 0] * 5)
    >>> m = verification_metrics(scores, labels, assign_folds(labels, 5))
    >>> m.accuracy, m.auc
    (1.0, 1.0)

View 1 files (``pairsDevTrain.txt``) have no folds; :func:`assign_folds` defines them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

from ..errors import DataError


def assign_folds(labels: np.ndarray, n_folds: int = 10) -> np.ndarray:
    """Fold index of each pair for files without official folds.

    Stratified and without shuffling (``sklearn.model_selection.StratifiedKFold(n_folds)``): the k-th fold holds the
    k-th contiguous block of the same-person pairs and of the different-person pairs, in file order. LFW's files list
    pairs alphabetically, so folds share few people -- as in View 2, where the 10 sets are person-disjoint.

    >>> assign_folds(np.array([1, 1, 1, 1, 0, 0, 0, 0]), 2).tolist()
    [0, 0, 1, 1, 0, 0, 1, 1]
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if n_folds < 2 or counts.min() < n_folds:
        raise DataError(
            f"{n_folds}-fold verification needs at least {max(n_folds, 2)} same and {max(n_folds, 2)} different "
            f"pairs, got {counts[1]} same and {counts[0]} different"
        )
    folds = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=False)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        folds[test] = k
    return folds


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy of ``same = score >= threshold`` -> (threshold, accuracy).

    Candidates come from :func:`sklearn.metrics.roc_curve`; the threshold returned lies
    halfway between the best cut's score and the next lower one, so it generalises.

    >>> best_threshold(np.array([0.9, 0.6, 0.4, 0.1]), np.array([1, 1, 0, 0]))
    (0.5, 1.0)
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise DataError(f"a threshold needs same and different pairs, got {positives} same and {negatives} different")
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    accuracy = (tpr * positives + (1 - fpr) * negatives) / len(labels)
    best = int(np.argmax(accuracy))
    finite = thresholds.copy()
    finite[0] = thresholds[1] + 1e-6 if len(thresholds) > 1 else np.inf  # roc_curve's first cut is +inf
    if best + 1 < len(finite):
        threshold = (finite[best] + finite[best + 1]) / 2
    else:  # everything accepted: any threshold below the lowest score
        threshold = finite[best] - 1e-6
    return float(threshold), float(accuracy[best])


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold accuracy with the threshold chosen on the other folds -> (accuracies, thresholds).

    ``scores``: one per pair, or per fold ``(folds, pairs)`` (row k: every pair scored as normalised for test fold
    k, from the other folds only; see :func:`~.evaluate.pair_scores`): fold k's threshold and accuracy use row k.
    """
    scores, labels, folds = np.asarray(scores, dtype=np.float64), np.asarray(labels), np.asarray(folds)
    ids = np.unique(folds)
    if len(ids) < 2:
        raise DataError(f"k-fold verification needs at least 2 folds, got {len(ids)}")
    accuracies, thresholds = [], []
    for row, k in enumerate(ids):
        test, fold_scores = folds == k, scores[row] if scores.ndim == 2 else scores
        threshold, _ = best_threshold(fold_scores[~test], labels[~test])
        accuracies.append(float(((fold_scores[test] >= threshold) == labels[test].astype(bool)).mean()))
        thresholds.append(threshold)
    return np.array(accuracies), np.array(thresholds)


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float = 1e-3) -> tuple[float, str | None]:
    """True accept rate at the largest threshold-achievable false accept rate <= ``far`` -> (TAR, note).

    With N different-person pairs FAR moves in steps of 1/N; when ``far < 1/N`` no false
    accept is allowed and the value is TAR at FAR = 0. The note says so (None otherwise).

    >>> tar, note = tar_at_far(np.array([0.9, 0.8, 0.85, 0.1]), np.array([1, 1, 0, 0]), far=0.5)
    >>> tar, note
    (1.0, 'FAR=0.5 of 2 different-person pairs allows only 1 false accept(s): a noisy estimate')
    """
    labels = np.asarray(labels)
    negatives = int((labels == 0).sum())
    if negatives == 0 or negatives == len(labels):
        raise DataError("TAR@FAR needs same and different pairs")
    fpr, tpr, _ = roc_curve(labels, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    tar = float(tpr[fpr <= far + 1e-12].max())
    allowed = int(np.floor(far * negatives + 1e-9))
    if allowed < 1:
        return tar, (f"only {negatives} different-person pairs: FAR={far:g} needs at least {int(np.ceil(1 / far))}; "
                     "the value is TAR at FAR=0")
    if allowed < 10:
        return tar, (f"FAR={far:g} of {negatives} different-person pairs allows only {allowed} false accept(s): "
                     "a noisy estimate")
    return tar, None


@dataclass
class VerificationMetrics:
    """The pair-verification numbers of one set of scores.

    Attributes:
        accuracy / accuracy_std: mean and standard deviation of the per-fold accuracies.
        fold_accuracies / fold_thresholds: per fold (threshold chosen on the other folds).
        threshold: the best threshold on all pairs (to use on new pairs).
        auc: ROC AUC (``sklearn.metrics.roc_auc_score``).
        tar, far, tar_note: TAR at FAR <= ``far``, and a caveat when negatives are few.
        fpr / tpr: the ROC curve.
        num_pairs / num_same / num_folds / official_folds: what was measured.
    """

    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    threshold: float
    auc: float
    tar: float
    far: float
    tar_note: str | None
    num_pairs: int
    num_same: int
    num_folds: int
    official_folds: bool = False
    fpr: list[float] = field(default_factory=list, repr=False)
    tpr: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """The numbers, without the ROC curve."""
        return {key: value for key, value in asdict(self).items() if key not in ("fpr", "tpr")}

    def scalars(self, prefix: str = "verify/") -> dict[str, float]:
        """The headline numbers as ``{verify/acc, verify/acc_std, verify/auc, verify/tar@far1e-3}``."""
        return {
            f"{prefix}acc": self.accuracy,
            f"{prefix}acc_std": self.accuracy_std,
            f"{prefix}auc": self.auc,
            f"{prefix}tar@far{self.far:.0e}".replace("e-0", "e-"): self.tar,
        }

    def summary(self) -> str:
        """One line: ``acc 0.9318 ± 0.0150 (10 folds), AUC 0.9801, TAR@FAR=0.001 0.5123``."""
        return (f"acc {self.accuracy:.4f} ± {self.accuracy_std:.4f} ({self.num_folds} folds), AUC {self.auc:.4f}, "
                f"TAR@FAR={self.far:g} {self.tar:.4f}")


def own_fold_scores(scores: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each pair's score from its own fold's row of per-fold scores ``(folds, pairs)`` (1-d scores: as they are).

    >>> own_fold_scores(np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), np.array([1, 0, 1])).tolist()
    [0.4, 0.2, 0.6]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return scores
    rows = np.searchsorted(np.unique(folds), folds)
    return scores[rows, np.arange(scores.shape[1])]


def verification_metrics(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray | None = None, far: float = 1e-3,
                         n_folds: int = 10, official: bool | None = None) -> VerificationMetrics:
    """All metrics of one set of pair scores; ``folds=None`` uses :func:`assign_folds` (``official``: whether
    ``folds`` are the file's own; default: whether they were given).

    ``scores`` may be per fold ``(folds, pairs)`` (see :func:`kfold_accuracy`); the threshold on all pairs, AUC,
    TAR@FAR and the ROC then use each pair's score from its own fold's row (:func:`own_fold_scores`).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if scores.shape[-1:] != labels.shape or scores.ndim not in (1, 2):
        raise DataError(f"scores {scores.shape} must be 1-d (or one row per fold) like labels {labels.shape}")
    if not np.isfinite(scores).all():
        raise DataError(f"{int((~np.isfinite(scores)).sum())} pair score(s) are not finite (NaN/inf embeddings?)")
    official = folds is not None if official is None else official
    folds = assign_folds(labels, n_folds) if folds is None else np.asarray(folds)
    if scores.ndim == 2 and len(scores) != len(np.unique(folds)):
        raise DataError(f"{len(scores)} rows of per-fold scores for {len(np.unique(folds))} folds")
    accuracies, thresholds = kfold_accuracy(scores, labels, folds)
    scores = own_fold_scores(scores, folds)
    threshold, _ = best_threshold(scores, labels)
    tar, note = tar_at_far(scores, labels, far)
    fpr, tpr, _ = roc_curve(labels, scores)
    return VerificationMetrics(
        accuracy=float(accuracies.mean()), accuracy_std=float(accuracies.std()), fold_accuracies=accuracies.tolist(),
        fold_thresholds=thresholds.tolist(), threshold=threshold, auc=float(roc_auc_score(labels, scores)), tar=tar,
        far=far, tar_note=note, num_pairs=len(labels), num_same=int(labels.sum()), num_folds=len(accuracies),
        official_folds=official, fpr=fpr.tolist(), tpr=tpr.tolist(),
    )


__all__ = [
    "VerificationMetrics",
    "assign_folds",
    "best_threshold",
    "kfold_accuracy",
    "own_fold_scores",
    "tar_at_far",
    "verification_metrics",
]
