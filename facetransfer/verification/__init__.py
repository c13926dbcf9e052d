"""Face verification and embeddings: the LFW pairs protocol, an embedding API and a gallery.

    >>> from facetransfer.verification import evaluate_pairs, Embedder, Gallery  # doctest: +SKIP
    >>> result = evaluate_pairs(model, "lfw/pairsDevTrain.txt", face_crop=0.6)  # doctest: +SKIP

See docs/verification.md.
"""

from .callback import PairVerification
from .embedder import Embedder, as_backbone, weights_fingerprint
from .evaluate import VerificationResult, evaluate_pairs, plot_roc
from .gallery import Gallery, Match, list_identity_images
from .metrics import (
    VerificationMetrics,
    assign_folds,
    best_threshold,
    kfold_accuracy,
    tar_at_far,
    verification_metrics,
)
from .pairs import Pair, PairsProtocol, lfw_key, read_pairs

__all__ = [
    "Embedder",
    "Gallery",
    "Match",
    "Pair",
    "PairVerification",
    "PairsProtocol",
    "VerificationMetrics",
    "VerificationResult",
    "as_backbone",
    "assign_folds",
    "best_threshold",
    "evaluate_pairs",
    "kfold_accuracy",
    "lfw_key",
    "list_identity_images",
    "plot_roc",
    "read_pairs",
    "tar_at_far",
    "verification_metrics",
    "weights_fingerprint",
]
