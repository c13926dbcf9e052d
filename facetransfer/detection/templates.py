"""Where the five landmarks go in an aligned face: the ``dlib`` and ``arcface`` templates.

A template is five target points (left eye, right eye, nose, left and right mouth corner, as the detector returns
them) in a square chip of ``size`` pixels. Any output size is the same template scaled; a *canvas* larger than the
chip adds an even margin (the template stays centred), which is how a backbone whose eval transform centre-crops
``crop_size`` out of ``resize_size`` sees exactly the template::

    >>> get_template("arcface").size
    112
    >>> get_template("dlib", size=300).points[0].tolist()
    [93.80000305175781, 88.80000305175781]
    >>> default_template_name("dlib_resnet"), default_template_name("resnet50")
    ('dlib', 'arcface')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError, unknown_choice
from ..preprocess import Preprocess


@dataclass(frozen=True)
class FaceTemplate:
    """Five landmark targets in a ``size`` x ``size`` output image.

    Attributes:
        name: ``dlib``, ``arcface`` or a custom name.
        size: side of the output image in pixels.
        points: ``(5, 2)`` float32 ``x, y`` targets (pixel centres at ``+0.5``).
    """

    name: str
    size: int
    points: torch.Tensor

    def scaled(self, size: int, canvas: int | None = None) -> FaceTemplate:
        """The template for a ``size`` px chip, centred in a ``canvas`` px output (default: ``size``).

        >>> get_template("arcface").scaled(224, canvas=256).size
        256
        """
        canvas = size if canvas is None else canvas
        if size < 8 or canvas < size:
            raise ConfigError(f"template size must be >= 8 and the canvas at least as large, got {size} / {canvas}")
        points = self.points * (size / self.size) + (canvas - size) / 2
        return FaceTemplate(self.name, int(canvas), points)

    def describe(self) -> dict:
        points = [[round(float(v), 2) for v in p] for p in self.points]
        return {"template": self.name, "size": self.size, "points": points}


#: the native templates. ``dlib``: where the five points land on dlib's 150 px face chips
#: (``get_face_chip_details(size=150, padding=0.25)``, the input of dlib's face-recognition
#: ResNet), measured; ``arcface``: the standard 112 px five-point template of ArcFace/insightface.
TEMPLATES: dict[str, FaceTemplate] = {
    "dlib": FaceTemplate("dlib", 150, torch.tensor(
        [[46.9, 44.4], [101.1, 43.9], [73.5, 77.4], [51.2, 102.9], [96.2, 102.6]])),
    "arcface": FaceTemplate("arcface", 112, torch.tensor(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])),
}

def list_templates() -> list[str]:
    return sorted(TEMPLATES)


def get_template(name: str | FaceTemplate, size: int | None = None) -> FaceTemplate:
    """A named template (``dlib``, ``arcface``) scaled to ``size`` px (default: its native size)."""
    template = name if isinstance(name, FaceTemplate) else TEMPLATES.get(name)
    if template is None:
        raise unknown_choice("alignment template", name, TEMPLATES)
    return template if size is None or size == template.size else template.scaled(size)


def default_template_name(backbone: str) -> str:
    """The five-point layout ``backbone`` was trained on: its preprocessing's ``face_template`` (``dlib`` for
    ``dlib_resnet``, else ``arcface``)."""
    from ..models import backbone_preprocess

    return backbone_preprocess(backbone).face_template


def template_for_input(preprocess: Preprocess, name: str | None = None) -> FaceTemplate:
    """Template ``name`` (default: the backbone's own, ``preprocess.face_template``) placed so that
    ``preprocess``'s eval transform keeps it exactly: a ``crop_size`` chip centred in a ``resize_size``
    canvas (the resize is then a no-op and the centre crop keeps the template's chip).

    >>> template_for_input(Preprocess(150, 150, face_template="dlib")).name
    'dlib'
    >>> template_for_input(Preprocess(224, 256), "dlib").size
    256
    """
    return get_template(name or preprocess.face_template).scaled(preprocess.crop_size, canvas=preprocess.resize_size)


def template_for_backbone(backbone: str, preprocess: Preprocess) -> FaceTemplate:
    """:func:`template_for_input` of the backbone's default template.

    >>> template_for_backbone("mobilenet_v2", Preprocess(224, 256)).size
    256
    """
    return template_for_input(preprocess, default_template_name(backbone))


__all__ = [
    "TEMPLATES", "FaceTemplate", "default_template_name", "get_template", "list_templates", "template_for_backbone",
    "template_for_input",
]
