"""facetransfer: face recognition by transfer learning with PyTorch Lightning.

    >>> import facetransfer as ft
    >>> data = ft.FaceDataModule("folder", root="faces/", preprocess=ft.backbone_preprocess("mobilenet_v2"))  # doctest: +SKIP
    >>> model = ft.FaceClassifier("mobilenet_v2", weights="IMAGENET1K_V1", freeze="all",
    ...                           class_names=data.class_names, features=data.features)  # doctest: +SKIP
    >>> ft.make_trainer(max_epochs=20).fit(model, data)  # doctest: +SKIP

The names below are imported on first use, so ``import facetransfer`` (and the ``facetransfer``
command's tool subcommands) start without loading PyTorch Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes

__version__ = "0.1.0"

# the public names by the module that defines them
_MODULES = {
    "errors": ["ConfigError", "DataError", "FaceTransferError", "WeightsError"],
    "preprocess": ["Augment", "Preprocess"],
    "models": ["Backbone", "backbone_preprocess", "get_backbone", "import_weights_file", "list_backbones",
               "register_backbone"],
    "features": ["FeatureProvider", "InMemoryFeatures"],
    "data": ["FaceDataModule", "FaceSource", "SplitManifest", "get_source", "list_sources", "register_source"],
    "verification": ["Embedder", "Gallery", "Match", "PairVerification", "PairsProtocol", "VerificationResult",
                     "evaluate_pairs"],
    "training.freeze": ["apply_freeze_policy", "list_freeze_policies", "register_freeze_policy"],
    "training.module": ["FaceClassifier"],
    "training.trainer": ["default_callbacks", "make_trainer"],
    "training.malloc_tuning": ["tune_malloc"],
    "strategies": ["Strategy", "get_strategy", "list_strategies", "register_strategy"],
    "sweep": ["load_sweep_config", "run_sweep", "write_report"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .data import FaceDataModule, FaceSource, SplitManifest, get_source, list_sources, register_source
    from .errors import ConfigError, DataError, FaceTransferError, WeightsError
    from .features import FeatureProvider, InMemoryFeatures
    from .models import (
        Backbone,
        backbone_preprocess,
        get_backbone,
        import_weights_file,
        list_backbones,
        register_backbone,
    )
    from .preprocess import Augment, Preprocess
    from .strategies import Strategy, get_strategy, list_strategies, register_strategy
    from .sweep import load_sweep_config, run_sweep, write_report
    from .training.freeze import apply_freeze_policy, list_freeze_policies, register_freeze_policy
    from .training.malloc_tuning import tune_malloc
    from .training.module import FaceClassifier
    from .training.trainer import default_callbacks, make_trainer
    from .verification import (
        Embedder,
        Gallery,
        Match,
        PairsProtocol,
        PairVerification,
        VerificationResult,
        evaluate_pairs,
    )
