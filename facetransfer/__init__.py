"""facetransfer: face recognition by transfer learning with PyTorch Lightning.

    >>> import facetransfer as ft
    >>> model = ft.FaceClassifier("mobilenet_v2", weights="IMAGENET1K_V1", freeze="all")  # doctest: +SKIP
    >>> data = ft.FaceDataModule("folder", root="faces/", train_samples=100)  # doctest: +SKIP
    >>> ft.make_trainer(max_epochs=20).fit(model, data)  # doctest: +SKIP
"""

from .data import FaceDataModule, FaceSource, SplitManifest, get_source, list_sources, register_source
from lightning import seed_everything

from ._noise import silence_known_noise
from .errors import ConfigError, DataError, FaceTransferError, WeightsError
from .freeze import apply_freeze_policy, list_freeze_policies, register_freeze_policy
from .malloc_tuning import tune_malloc
from .models import Backbone, get_backbone, import_weights_file, list_backbones, register_backbone
from .module import FaceClassifier
from .preprocess import Preprocess
from .trainer import default_callbacks, make_trainer
from .verification import Embedder, Gallery, Match, PairsProtocol, VerificationResult, evaluate_pairs
from .sweep import load_sweep_config, run_sweep, write_report

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "ConfigError",
    "DataError",
    "Embedder",
    "FaceClassifier",
    "FaceDataModule",
    "FaceSource",
    "FaceTransferError",
    "Gallery",
    "Match",
    "PairsProtocol",
    "Preprocess",
    "SplitManifest",
    "VerificationResult",
    "WeightsError",
    "apply_freeze_policy",
    "default_callbacks",
    "evaluate_pairs",
    "get_backbone",
    "get_source",
    "import_weights_file",
    "list_backbones",
    "list_freeze_policies",
    "list_sources",
    "load_sweep_config",
    "make_trainer",
    "register_backbone",
    "register_freeze_policy",
    "register_source",
    "run_sweep",
    "seed_everything",
    "silence_known_noise",
    "tune_malloc",
    "write_report",
]
