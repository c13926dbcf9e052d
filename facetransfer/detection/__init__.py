"""Face detection and alignment: from raw photos to aligned face chips.

- detectors with five landmarks in a registry (:func:`get_detector`; ``mtcnn`` built in);
- templates (``dlib``, ``arcface``) and the batched 5-point similarity warp;
- :class:`Aligner` (detect once, cached on disk by file content; pick one face; warp);
  :class:`~facetransfer.data.AlignedSource` is any data source with aligned faces, and
  ``facetransfer align SRC DST`` (:mod:`facetransfer.cli.align`) aligns a folder.

See docs/alignment.md.
"""

from . import mtcnn  # noqa: F401  (registers the built-in detector)
from .aligner import PICK_POLICIES, AlignedImage, Aligner, FaceLocation, NoFaceError, Prepared, pick_face
from .cache import LandmarkCache, default_cache_dir
from .detector import LANDMARK_NAMES, Detections, FaceDetector
from .landmarks import LandmarkTable
from .registry import ENTRY_POINT_GROUP, get_detector, list_detectors, register_detector
from .templates import (
    FaceTemplate,
    default_template_name,
    get_template,
    list_templates,
    template_for_backbone,
    template_for_input,
)
from .transform import similarity_transform, warp_faces

__all__ = [
    "ENTRY_POINT_GROUP", "LANDMARK_NAMES", "PICK_POLICIES", "AlignedImage", "Aligner", "Detections", "FaceDetector",
    "FaceLocation", "FaceTemplate", "LandmarkCache", "LandmarkTable", "NoFaceError", "Prepared",
    "default_cache_dir", "default_template_name", "get_detector", "get_template", "list_detectors",
    "list_templates", "pick_face", "register_detector", "similarity_transform", "template_for_backbone",
    "template_for_input", "warp_faces",
]
