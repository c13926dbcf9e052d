"""The five-point similarity transform and the warp, on synthetic points and images; the templates."""

from __future__ import annotations

import math

import pytest
import torch

from facetransfer.detection import get_template, list_templates, template_for_backbone
from facetransfer.detection.templates import default_template_name
from facetransfer.detection.transform import (
    invert_affine,
    similarity_transform,
    transform_points,
    transform_scale,
    warp_faces,
)
from facetransfer.errors import ConfigError
from facetransfer.preprocess import Preprocess

from .detection_fakes import blob_centres, dot_image


def _similarity(angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    linear = torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)
    return torch.cat([linear, shift[:, :, None]], dim=2)


def test_recovers_exact_similarities_batched():
    gen = torch.Generator().manual_seed(0)
    src = torch.rand(16, 5, 2, generator=gen) * 200
    truth = _similarity(torch.rand(16, generator=gen) * 6 - 3, torch.rand(16, generator=gen) * 3 + 0.2,
                        torch.rand(16, 2, generator=gen) * 100 - 50)
    fitted = similarity_transform(src, transform_points(truth, src))
    assert torch.allclose(fitted, truth, atol=1e-3)
    assert torch.allclose(transform_scale(fitted), transform_scale(truth), atol=1e-4)


def test_least_squares_with_noise_and_no_reflection():
    gen = torch.Generator().manual_seed(1)
    template = get_template("arcface").points
    truth = _similarity(torch.tensor([0.3]), torch.tensor([1.7]), torch.tensor([[12.0, -4.0]]))
    src = transform_points(invert_affine(truth), template[None]) + torch.randn(1, 5, 2, generator=gen) * 0.5
    fitted = similarity_transform(src, template)
    assert torch.allclose(fitted[:, :, :2], truth[:, :, :2], atol=0.05)
    residual = (transform_points(fitted, src) - template).norm(dim=2).mean()
    assert residual < 1.5
    # mirrored landmarks (left/right swapped) must not give a reflection: the determinant stays positive
    mirrored = src.clone()
    mirrored[..., 0] = -mirrored[..., 0]
    assert torch.linalg.det(similarity_transform(mirrored, template)[:, :, :2]) > 0


def test_one_template_for_a_batch_broadcasts():
    template = get_template("dlib").points
    src = torch.stack([template + 5, template * 2])
    fitted = similarity_transform(src, template)
    assert torch.allclose(transform_points(fitted, src), template.expand(2, 5, 2), atol=1e-3)


@pytest.mark.parametrize("face_scale", [0.7, 2.0, 9.0])  # chip upsamples, mildly and strongly downsamples the face
def test_warp_puts_landmarks_on_the_template(face_scale):
    template = get_template("dlib")
    angle = torch.tensor([0.4])
    # where the face's landmarks lie in a photo: the template rotated, scaled and shifted
    chip_to_image = _similarity(angle, torch.tensor([face_scale]), torch.tensor([[30.0, 50.0]]))
    landmarks = transform_points(chip_to_image, template.points[None])[0]
    height = width = int(math.ceil(160 * face_scale + 120))
    image = dot_image(landmarks, height, width, radius=2.5 * face_scale)
    matrix = similarity_transform(landmarks[None], template.points)
    chip = warp_faces(image[None], matrix, template.size)[0]
    assert chip.dtype == torch.uint8 and chip.shape == (3, 150, 150)
    assert (blob_centres(chip, template.points) - template.points).norm(dim=1).max() < 0.75


def test_warp_outside_the_image_is_black_and_batches_mix_scales():
    template = get_template("arcface", size=64)
    image = torch.full((3, 100, 100), 200, dtype=torch.uint8)
    near = similarity_transform(template.points[None] * 0.5 + 80, template.points)  # chip corner (64, 64) -> (112, 112)
    far = similarity_transform(template.points[None] * 10, template.points)  # needs the reduced path
    chips = warp_faces(torch.stack([image, image]), torch.cat([near, far]), 64)
    assert chips.shape == (2, 3, 64, 64)
    assert chips[0, :, 0, 0].tolist() == [200, 200, 200]
    assert chips[0, :, -1, -1].tolist() == [0, 0, 0]  # beyond the image's bottom-right corner


def test_templates_scale_and_centre_on_a_canvas():
    assert list_templates() == ["arcface", "dlib"]
    dlib = get_template("dlib")
    assert dlib.size == 150 and dlib.points[0].tolist() == pytest.approx([46.9, 44.4])
    big = get_template("dlib", size=300)
    assert torch.allclose(big.points, dlib.points * 2)
    arc = get_template("arcface")
    assert arc.size == 112 and arc.points[2].tolist() == pytest.approx([56.0252, 71.7366])
    on_canvas = arc.scaled(224, canvas=256)
    assert on_canvas.size == 256 and torch.allclose(on_canvas.points, arc.points * 2 + 16)
    with pytest.raises(ConfigError, match="unknown alignment template 'dlib68'; known: arcface, dlib"):
        get_template("dlib68")
    with pytest.raises(ConfigError, match="canvas"):
        arc.scaled(224, canvas=200)


def test_default_template_per_backbone():
    assert default_template_name("dlib_resnet") == "dlib"
    assert default_template_name("resnet50") == "arcface"
    chip = template_for_backbone("mobilenet_v2", Preprocess(crop_size=224, resize_size=256))
    assert chip.size == 256 and chip.name == "arcface"
    assert template_for_backbone("dlib_resnet", Preprocess(150, 150)).points.tolist() == get_template("dlib").points.tolist()
