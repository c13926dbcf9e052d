"""Face detection and alignment: detectors with 5 landmarks, templates, the Aligner."""

from . import mtcnn  # noqa: F401  (registers the built-in detector)
from .detector import LANDMARK_NAMES, Detections, FaceDetector
from .registry import ENTRY_POINT_GROUP, get_detector, list_detectors, register_detector
