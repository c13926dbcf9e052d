"""Face detection and alignment: detectors with 5 landmarks, templates, the Aligner."""

from . import mtcnn  # noqa: F401  (registers the built-in detector)
from .detector import LANDMARK_NAMES, Detections, FaceDetector
from .registry import ENTRY_POINT_GROUP, get_detector, list_detectors, register_detector
from .templates import FaceTemplate, default_template_name, get_template, list_templates, template_for_backbone
from .transform import similarity_transform, warp_faces
