"""``linear_probe``: a frozen backbone and a linear head trained by Lightning on cached features.

Its recipe (``recipes/linear_probe.yaml``) trains the head to convergence whatever the training-set size:
full-batch L-BFGS on standardised features with the L2 penalty of the paper's logistic regression.
"""

from __future__ import annotations

from .base import register_strategy
from .lightning import LightningStrategy


@register_strategy
class LinearProbe(LightningStrategy):
    """Frozen backbone, a linear head trained by Lightning (full-batch L-BFGS on cached features)."""

    name = "linear_probe"
    plot_style = ("--", "s")
    freeze = "all"
