"""Backbones: a registry of feature extractors with a uniform interface."""

from . import dlib_resnet, scratch, torchvision_backbones  # noqa: F401  (register the built-ins)
from .backbone import Backbone
from .fusion import fused_feature_copy, inference_forward
from .registry import (
    ENTRY_POINT_GROUP,
    backbone_preprocess,
    get_backbone,
    get_backbone_builder,
    list_backbones,
    register_backbone,
)
from .weights import cached_file, hub_checkpoint_dir, import_weights_file, register_weights_file

__all__ = [
    "ENTRY_POINT_GROUP", "Backbone", "backbone_preprocess", "cached_file", "fused_feature_copy",
    "get_backbone", "get_backbone_builder", "hub_checkpoint_dir", "import_weights_file", "inference_forward",
    "list_backbones", "register_backbone", "register_weights_file",
]
