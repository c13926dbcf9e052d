"""``lp_ft``: linear probe, then fine-tune (Kumar et al., ICLR 2022).

The new head is first fitted on the frozen pretrained features to convergence (the linear
probe's problem, on the features a sweep has cached already), then the network is fine-tuned
from that head with a low learning rate for the pretrained layers. One Lightning fit:
:class:`~facetransfer.training.callbacks.LinearProbeHead` runs the first phase when the fit starts (and
not again on a resume). Fine-tuning from a fitted head moves the pretrained features less than
from a random one, which matters most with few images and for face-pretrained networks.
"""

from __future__ import annotations

from .base import MethodSpec, Section, register_strategy
from .finetune import Finetune


def _linear_probe_head():
    from ..training.callbacks import LinearProbeHead

    return LinearProbeHead


LINEAR_PROBE = Section("lp", "the first phase: LinearProbeHead arguments (head_c, iterations)", _linear_probe_head)


@register_strategy
class LinearProbeThenFinetune(Finetune):
    """The head fitted on frozen features first, then fine-tuning with a low backbone learning rate."""

    name = "lp_ft"
    plot_style = ("-", "*")
    summary = "linear probe on the frozen features first (L-BFGS), then fine-tuning from that head"
    sections = (*Finetune.sections, LINEAR_PROBE)

    def callbacks(self, method: MethodSpec) -> list:
        return [*super().callbacks(method), _linear_probe_head()(**method.options.get("lp", {}))]
