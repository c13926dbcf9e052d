"""Face data: sources (LFW, CelebA, folders, synthetic), stratified splits, the DataModule."""

from . import celeba, lfw, synthetic  # noqa: F401  (register the built-in sources)
from .celeba import CelebASource
from .dataset import FaceDataset
from .images import load_rgb, to_rgb
from .lfw import LFWSource
from .sources import FaceRecord, FaceSource, FolderSource, get_source, list_sources, register_source
from .split import SplitManifest, make_split
from .synthetic import SyntheticSource

from .._lazy import lazy_attributes

__getattr__ = lazy_attributes(__name__, {"FaceDataModule": "datamodule"})  # imports Lightning: only when asked for


__all__ = [
    "CelebASource",
    "FaceDataModule",
    "FaceDataset",
    "FaceRecord",
    "FaceSource",
    "FolderSource",
    "LFWSource",
    "SplitManifest",
    "SyntheticSource",
    "get_source",
    "list_sources",
    "load_rgb",
    "make_split",
    "register_source",
    "to_rgb",
]
