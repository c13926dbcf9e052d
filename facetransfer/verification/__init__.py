"""Face verification and embeddings: the LFW pairs protocol, an embedding API and a gallery.

    >>> from facetransfer.verification import evaluate_pairs, Embedder, Gallery  # doctest: +SKIP
    >>> result = evaluate_pairs(model, "lfw/pairsDevTrain.txt", face_crop=0.6)  # doctest: +SKIP

See docs/verification.md.
"""

from .._lazy import lazy_attributes

# public name -> submodule (imported on first use)
_EXPORTS = {
    "Embedder": "embedder", "as_backbone": "embedder", "weights_fingerprint": "embedder",
    "Gallery": "gallery", "Match": "gallery", "list_identity_images": "gallery",
    "Pair": ".data.pairs", "PairsProtocol": ".data.pairs", "lfw_key": ".data.pairs", "read_pairs": ".data.pairs",
    "PairVerification": "callback",
    "VerificationResult": "evaluate", "evaluate_pairs": "evaluate", "plot_roc": "evaluate",
    "VerificationMetrics": "metrics", "assign_folds": "metrics", "best_threshold": "metrics",
    "kfold_accuracy": "metrics", "tar_at_far": "metrics", "verification_metrics": "metrics",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
