"""Strategies: scratch, linear probe, fine-tuning, the paper's logistic regression, prototypes, LP-FT -- plug-ins.

    >>> from facetransfer.strategies import list_strategies
    >>> list_strategies()[:6]
    ['scratch', 'linear_probe', 'finetune', 'features_logreg', 'prototype', 'lp_ft']
"""

# the built-ins register in this order, the order `facetransfer strategies` lists them in
# isort: off
from . import scratch, linear_probe, finetune, features_logreg, prototype, lp_ft  # noqa: F401
# isort: on
from .base import ENTRY_POINT_GROUP, CellResult, Section, Strategy, get_strategy, list_strategies, register_strategy
from .frozen import FrozenFeatureStrategy, classification_metrics
from .lightning import LightningStrategy

__all__ = [
    "ENTRY_POINT_GROUP", "CellResult", "FrozenFeatureStrategy", "LightningStrategy", "Section", "Strategy",
    "classification_metrics", "get_strategy", "list_strategies", "register_strategy",
]
