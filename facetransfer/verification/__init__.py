"""Face verification and embeddings: the LFW pairs protocol, an embedding API and a gallery.

    >>> from facetransfer.verification import evaluate_pairs, Embedder, Gallery  # doctest: +SKIP
    >>> result = evaluate_pairs(model, "lfw/pairsDevTrain.txt", face_crop=0.6)  # doctest: +SKIP

See docs/verification.md.
"""

from .._lazy import lazy_attributes

# public name -> submodule (imported on first use)
_EXPORTS = {
    "Embedder": "embedder",
    "Gallery": "gallery",
    "Match": "gallery",
    "Pair": "pairs",
    "PairVerification": "callback",
    "PairsProtocol": "pairs",
    "VerificationMetrics": "metrics",
    "VerificationResult": "evaluate",
    "as_backbone": "embedder",
    "assign_folds": "metrics",
    "best_threshold": "metrics",
    "evaluate_pairs": "evaluate",
    "kfold_accuracy": "metrics",
    "lfw_key": "pairs",
    "list_identity_images": "gallery",
    "plot_roc": "evaluate",
    "read_pairs": "pairs",
    "tar_at_far": "metrics",
    "verification_metrics": "metrics",
    "weights_fingerprint": "embedder",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
