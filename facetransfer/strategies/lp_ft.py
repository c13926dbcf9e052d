"""``lp_ft``: linear probe, then fine-tune (Kumar et al., ICLR 2022), in one Lightning fit.

:class:`~facetransfer.training.callbacks.LinearProbeHead` fits the new head on the frozen pretrained features
when the fit starts (not again on a resume); fine-tuning from a fitted head moves the pretrained features less
than from a random one, which matters most with few images (measurements: docs/reproducing.md).
"""

from __future__ import annotations

from .base import MethodSpec, Section, register_strategy
from .finetune import Finetune
from .sections import imported

LINEAR_PROBE = Section("lp", "the first phase: LinearProbeHead arguments (head_c, iterations)",
                       imported("facetransfer.training.callbacks:LinearProbeHead"))


@register_strategy
class LinearProbeThenFinetune(Finetune):
    """Linear probe on the frozen features first (L-BFGS), then fine-tuning from that head."""

    name = "lp_ft"
    plot_style = ("-", "*")
    sections = (*Finetune.sections, LINEAR_PROBE)

    def callbacks(self, method: MethodSpec) -> list:
        return [*super().callbacks(method), LINEAR_PROBE.target()(**method.options.get("lp", {}))]
