"""Face data: sources (LFW, CelebA, folders, synthetic), stratified splits, the DataModule."""

from .._lazy import lazy_attributes
from ..io.images import load_rgb, to_rgb
from .celeba import CelebASource  # importing a source's module registers it
from .dataset import FaceDataset
from .lfw import LFWSource
from .sources import FaceRecord, FaceSource, FolderSource, get_source, list_sources, register_source
from .split import SplitManifest, make_split
from .synthetic import SyntheticSource

# imported when asked for: the DataModule imports Lightning, aligned sources the face detectors
__getattr__ = lazy_attributes(__name__, {"FaceDataModule": "datamodule", "AlignedSource": "aligned",
                                         "aligned_source": "aligned", "alignment_choices": "aligned"})


__all__ = [
    "AlignedSource", "CelebASource", "FaceDataModule", "FaceDataset", "FaceRecord", "FaceSource",
    "FolderSource", "LFWSource", "SplitManifest", "SyntheticSource", "aligned_source", "alignment_choices",
    "get_source", "list_sources", "load_rgb", "make_split", "register_source", "to_rgb",
]
