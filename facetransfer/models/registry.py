"""The backbone registry, in the style of torchvision's ``register_model`` / ``get_model``.

Built-in backbones register with :func:`register_backbone`; other packages add theirs through the
``facetransfer.backbones`` entry-point group (docs/plugins.md): a builder returning a :class:`Backbone` that takes
keyword arguments, at least ``weights`` (a weights name or ``None``) and ``weights_path`` (a local state dict or
``None``)::

    >>> "resnet50" in list_backbones()
    True
    >>> get_backbone("resnet18", weights=None).num_features  # keyword arguments checked against the builder
    512
"""

from __future__ import annotations

from typing import Any

import torch

from ..preprocess import Preprocess
from ..registry import Registry
from .backbone import Backbone

BACKBONES: Registry[Backbone] = Registry("backbone", "facetransfer.backbones", Backbone)
ENTRY_POINT_GROUP = BACKBONES.group
register_backbone = BACKBONES.register
list_backbones = BACKBONES.names
get_backbone_builder = BACKBONES.get
get_backbone = BACKBONES.build


def backbone_preprocess(
    backbone: Any, weights: str | None = None, backbone_args: dict[str, Any] | None = None,
    input_size: int | None = None,
) -> Preprocess:
    """The input preprocessing of a backbone configuration, without loading any weights.

    Like torchvision's ``weights.transforms()``: what a DataModule needs to know about the model,
    from the same options the model is built with. The backbone is built on PyTorch's ``meta``
    device (no memory, no initialisation) just to read its :class:`~facetransfer.Preprocess`.

    >>> backbone_preprocess("dlib_resnet").crop_size
    150
    >>> backbone_preprocess("mobilenet_v2", input_size=160).resize_size
    183
    """
    with torch.device("meta"):
        if isinstance(backbone, str):
            built = get_backbone(backbone, weights=None, **(backbone_args or {}))
        else:  # a Backbone configured by class_path / init_args (LightningCLI), or an instance
            built = backbone if isinstance(backbone, Backbone) else _instantiate(backbone)
    preprocess = built.preprocess
    return preprocess.resized(input_size) if input_size is not None else preprocess


def _instantiate(config: Any) -> Backbone:
    from jsonargparse import Namespace
    from jsonargparse._util import import_object

    config = config.as_dict() if isinstance(config, Namespace) else dict(config)
    cls = import_object(config["class_path"])
    return cls(**(config.get("init_args") or {}))
