"""Backbone registry in the style of torchvision's ``register_model`` / ``get_model``.

Built-in backbones register with :func:`register_backbone`; third-party packages
add theirs through the ``facetransfer.backbones`` entry-point group, whose value
is a builder (a callable returning a :class:`Backbone`)::

    # pyproject.toml of a plug-in package
    [project.entry-points."facetransfer.backbones"]
    my_net = "my_package.backbones:my_net"

    >>> from facetransfer.models import list_backbones
    >>> "resnet50" in list_backbones()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..preprocess import Preprocess
from ..registry import PluginRegistry
from .backbone import Backbone

ENTRY_POINT_GROUP = "facetransfer.backbones"

BackboneBuilder = Callable[..., Backbone]
_F = TypeVar("_F", bound=BackboneBuilder)
BACKBONES: PluginRegistry[Backbone] = PluginRegistry("backbone", ENTRY_POINT_GROUP, Backbone)


def register_backbone(name: str | None = None) -> Callable[[_F], _F]:
    """Decorator adding a backbone builder to the registry under ``name`` (default: its own name).

    The builder takes keyword arguments, at least ``weights`` (a torchvision weights
    name or ``None``) and ``weights_path`` (a local state dict or ``None``).
    """
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Names of all registered backbones, plug-ins included, sorted."""
    return BACKBONES.names()


def get_backbone_builder(name: str) -> BackboneBuilder:
    return BACKBONES.builder(name)


def get_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build the backbone registered as ``name`` (keyword arguments checked against its builder).

    >>> net = get_backbone("resnet18", weights=None)
    >>> net.num_features
    512
    """
    return BACKBONES.build(name, **kwargs)


def backbone_preprocess(
    backbone: Any,
    weights: str | None = None,
    backbone_args: dict[str, Any] | None = None,
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
    import torch

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
