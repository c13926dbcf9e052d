"""``linear_probe``: a frozen backbone and a linear head trained by Lightning on cached features.

The head is trained to convergence whatever the training-set size: full-batch L-BFGS on the
standardised frozen features (``head_norm``) with the same L2 penalty as the paper's logistic
regression (``head_c`` = scikit-learn's ``C``); L-BFGS stops at scikit-learn's tolerance, so
the first epoch converges and the later ones confirm it; the best epoch by validation accuracy
is tested (the recipe: ``recipes/linear_probe.yaml``). Each method may override it in its
``model:`` / ``data:`` sections (e.g. ``optimizer: adam``,
``batch_size: 32`` for mini-batch training).
"""

from __future__ import annotations

from .base import register_strategy
from .lightning import LightningStrategy


@register_strategy
class LinearProbe(LightningStrategy):
    """Frozen backbone, a linear head trained by Lightning (full-batch L-BFGS on cached features)."""

    name = "linear_probe"
    plot_style = ("--", "s")
    summary = "frozen backbone, linear head trained by Lightning (full-batch L-BFGS on cached features)"
    freeze = "all"
