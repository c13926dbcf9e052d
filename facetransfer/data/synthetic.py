"""A built-in, deterministic generator of face-like identities (no image files needed).

Each identity has stable traits (head shape, skin tone, hair colour and style,
eyes, eyebrows, nose, mouth, ears, marks, glasses, beard); each image adds
nuisance (rotation, yaw, scale, shift, lighting, colour cast, expression,
cluttered background, occlusion, blur, sensor noise). Pixels depend only on
``(seed, identity, index)``, so they are identical across calls, processes and
DataLoader workers::

    >>> src = SyntheticSource(num_identities=5, images_per_identity=3)
    >>> src.records()[0]
    FaceRecord(identity='person_0000', key='person_0000/0000.png')
    >>> src.open("person_0003/0002.png").size
    (112, 112)

Calibration (seed 0, 40 identities, images 0-15 of each identity for training and 18-23
held out; measured on a 2-core CPU machine, PyTorch CPU build):

* a random-init ``scratch_cnn`` + ``reset_head(40)``, trained with plain torch (Adam, lr 1e-3
  one-cycle schedule, batch 32, random flips, 112 px) reaches on the held-out images
  (chance 2.5 %): 85 % top-1 trained on all 640 training images for 10 epochs (200 steps);
  9 % and 12 % (two draws) trained on 50 stratified images (1-2 per identity) for 100 epochs
  (also about 200 steps);
* frozen random-init ``scratch_cnn`` features + logistic regression (640 images): 45 %;
* on 28 px grey pixels: nearest class mean 33 %, logistic regression 35 %.

Rendering takes about 2.1 ms (CPU time) per 112 px image on one core of that machine.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import ConfigError, DataError
from .sources import FaceRecord, FaceSource, register_source

#: Bumped whenever the rendered pixels change, so manifests tell generations apart.
GENERATOR_VERSION = 1

# Skin tones from light to dark (RGB); an identity interpolates between neighbours.
_SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 128), (198, 134, 94), (161, 102, 66), (116, 72, 44),
                  (80, 52, 34)], dtype=np.float64)
_HAIR = np.array([(20, 16, 14), (55, 36, 24), (96, 62, 36), (150, 104, 60), (210, 176, 110), (160, 70, 35),
                  (150, 150, 150), (230, 230, 225)], dtype=np.float64)
_IRIS = np.array([(60, 40, 25), (100, 70, 40), (70, 110, 150), (80, 120, 80), (120, 120, 120)], dtype=np.float64)


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(entropy)))


def _color(c: np.ndarray | tuple) -> tuple[int, int, int]:
    return tuple(round(min(255.0, max(0.0, float(v)))) for v in c)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Traits:
    """Stable appearance of one identity.

    ``head_w``, ``head_h``, ``eye_w`` and ``eye_h`` are fractions of the canvas side; the other
    lengths and positions are fractions of the head's half-width or half-height.
    """

    head_w: float
    head_h: float
    jaw: float
    chin: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: int
    hairline: float
    part: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    iris: tuple[int, int, int]
    brow_dy: float
    brow_w: float
    brow_tilt: float
    brow_color: tuple[int, int, int]
    nose_len: float
    nose_w: float
    nose_style: int
    mouth_y: float
    mouth_w: float
    lip: tuple[int, int, int]
    lip_h: float
    ear: float
    mark: tuple[float, float] | None
    glasses: tuple[int, tuple[int, int, int]] | None
    beard: int


@lru_cache(maxsize=4096)
def _identity_traits(seed: int, identity: int) -> _Traits:
    """Traits seeded only by ``(seed, identity)``."""
    r = _rng(seed, 0, identity)
    u = r.uniform
    head_w = u(0.2, 0.27)
    skin_pos = u(0, len(_SKIN) - 1)
    lo = int(skin_pos)
    hi = min(lo + 1, len(_SKIN) - 1)
    skin = _SKIN[lo] * (1 - (skin_pos - lo)) + _SKIN[hi] * (skin_pos - lo) + r.normal(0, 6, 3)
    hair = _HAIR[r.integers(len(_HAIR))] + r.normal(0, 12, 3)
    brow = hair * 0.75 if hair.mean() > 120 else hair
    eye_w = head_w * u(0.18, 0.28)
    return _Traits(  # drawn in this order, which the pixels depend on
        head_w=head_w, head_h=head_w * u(1.1, 1.4), jaw=u(0.65, 1.0), chin=u(0.85, 1.1), skin=_color(skin),
        hair=_color(hair), hair_style=int(r.integers(8)), hairline=u(0.25, 0.6), part=u(-0.6, 0.6),
        eye_y=u(-0.22, -0.02), eye_dx=u(0.32, 0.5), eye_w=eye_w, eye_h=eye_w * u(0.38, 0.62),
        iris=_color(_IRIS[r.integers(len(_IRIS))] + r.normal(0, 10, 3)),
        brow_dy=u(1.2, 2.2), brow_w=u(0.02, 0.07), brow_tilt=u(-0.25, 0.25), brow_color=_color(brow),
        nose_len=u(0.22, 0.42), nose_w=u(0.12, 0.24), nose_style=int(r.integers(3)),
        mouth_y=u(0.42, 0.6), mouth_w=u(0.45, 0.8),
        lip=_color(np.array(skin) * np.array([0.85, 0.55, 0.55]) + r.normal(0, 8, 3)), lip_h=u(0.04, 0.1),
        ear=u(0.18, 0.3), mark=(u(-0.6, 0.6), u(-0.3, 0.6)) if r.random() < 0.35 else None,
        glasses=(int(r.integers(2)), _color(r.uniform(0, 200, 3))) if r.random() < 0.25 else None,
        beard=int(r.integers(1, 3)) if r.random() < 0.25 else 0,
    )


def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return _color(np.array(c, dtype=np.float64) * f)


def _muted(r: np.random.Generator, lo: float, hi: float) -> tuple[int, int, int]:
    """A grey level in ``[lo, hi]`` with a mild random tint, like most photo backgrounds."""
    return _color(r.uniform(lo, hi) + r.normal(0.0, 22.0, 3))


def _draw_background(draw: ImageDraw.ImageDraw, s: int, r: np.random.Generator) -> None:
    """Cluttered background: a muted base colour and a handful of random shapes."""
    draw.rectangle((0, 0, s, s), fill=_muted(r, 40, 220))
    for _ in range((1, 2, 2, 2, 3, 3)[r.integers(6)]):
        kind = r.integers(3)
        x0, y0 = r.uniform(-0.2, 1.0, 2) * s
        w, h = r.uniform(0.1, 0.7, 2) * s
        fill = _muted(r, 20, 235)
        if kind < 2:
            (draw.rectangle, draw.ellipse)[kind]((x0, y0, x0 + w, y0 + h), fill=fill)
        else:
            draw.line((x0, y0, x0 + w, y0 + h), fill=fill, width=max(1, int(r.uniform(0.01, 0.05) * s)))


def _draw_face(draw: ImageDraw.ImageDraw, s: int, t: _Traits, r: np.random.Generator) -> None:
    """The upright face at the canvas centre; ``r`` draws the per-image expression and yaw."""
    cx, cy = 0.5 * s, 0.46 * s
    hw, hh = t.head_w * s, t.head_h * s
    yaw = r.uniform(-0.4, 0.4)
    fx = cx + yaw * 0.1 * hw  # where the facial features sit horizontally
    hair = t.hair

    def ell(x: float, y: float, rx: float, ry: float, **kw: Any) -> None:
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), **kw)

    # Shoulders and neck (shirt colour is clothing: it changes from image to image).
    shirt = _color(r.uniform(10, 245, 3))
    ell(cx, cy + hh * 2.25, hw * 2.3, hh * 1.1, fill=shirt)
    draw.rectangle((cx - hw * 0.45, cy + hh * 0.5, cx + hw * 0.45, cy + hh * 1.25), fill=_shade(t.skin, 0.88))
    # Hair behind the head.
    if t.hair_style == 2:  # long
        ell(cx, cy - hh * 0.1, hw * 1.15, hh * 1.0, fill=hair)
        draw.rectangle((cx - hw * 1.15, cy - hh * 0.1, cx + hw * 1.15, cy + hh * 1.3), fill=hair)
    elif t.hair_style == 4:  # volume
        ell(cx, cy - hh * 0.15, hw * 1.45, hh * 1.15, fill=hair)
    elif t.hair_style == 5:  # bun
        ell(cx, cy - hh * 1.1, hw * 0.45, hw * 0.4, fill=hair)
    elif t.hair_style == 6:  # bob
        ell(cx, cy - hh * 0.1, hw * 1.12, hh * 0.98, fill=hair)
        draw.rectangle((cx - hw * 1.12, cy - hh * 0.1, cx + hw * 1.12, cy + hh * 0.45), fill=hair)
    # Ears (the one on the side the face turns to shrinks).
    for side in (-1, 1):
        k = 1.0 - 0.35 * max(0.0, side * yaw)
        ell(cx + side * hw * 0.98, cy + t.eye_y * hh + hh * 0.12, hw * t.ear * 0.7 * k, hh * t.ear, fill=t.skin)
    # Head: cranium + jaw.
    ell(cx, cy - hh * 0.1, hw, hh * 0.9, fill=t.skin)
    ell(cx + yaw * 0.05 * hw, cy + hh * 0.1, hw * t.jaw, hh * 0.9 * t.chin, fill=t.skin)
    # Beard.
    if t.beard:
        top = cy + hh * (t.mouth_y - 0.25 if t.beard == 2 else t.mouth_y + 0.12)
        chin = cy + hh * (0.1 + 0.9 * t.chin) + hh * 0.05
        draw.chord((cx - hw * t.jaw, top - hh * 0.6, cx + hw * t.jaw, chin), 0, 180, fill=hair)
        if t.beard == 2:  # moustache
            draw.rectangle((fx - hw * t.mouth_w * 0.55, top - hh * 0.04, fx + hw * t.mouth_w * 0.55, top + hh * 0.06),
                           fill=hair)
    # Hair on top.
    if t.hair_style == 7:  # receding: hair on the temples only
        for side in (-1, 1):
            ell(cx + side * hw * 0.9, cy - hh * 0.25, hw * 0.16, hh * 0.3, fill=hair)
    elif t.hair_style != 0:
        line = cy - hh * t.hairline
        draw.pieslice((cx - hw * 1.05, cy - hh * 1.1, cx + hw * 1.05, 2 * line - (cy - hh * 1.1)), 180, 360, fill=hair)
        if t.hair_style == 1:  # fringe with a side parting
            px = cx + t.part * hw
            draw.polygon([(cx - hw, line), (px, cy - hh * 1.0), (cx + hw, line + hh * 0.1 * t.part)], fill=hair)
        elif t.hair_style == 6:  # straight bangs
            draw.rectangle((cx - hw * 0.92, cy - hh * 0.8, cx + hw * 0.92, cy + hh * (t.eye_y - 0.2)), fill=hair)
    if t.mark is not None:
        ell(cx + t.mark[0] * hw, cy + t.mark[1] * hh, hw * 0.035, hw * 0.035, fill=_shade(t.skin, 0.45))
    # Eyes and brows; expression: openness, gaze, brow raise.
    open_ = r.uniform(0.64, 1.0)
    gaze = r.uniform(-0.12, 0.12) * t.eye_w
    raise_ = r.uniform(-0.12, 0.2) * t.eye_h
    ey = cy + t.eye_y * hh
    for side in (-1, 1):
        ex = fx + side * t.eye_dx * hw * (1.0 - 0.12 * side * yaw)
        eh = max(t.eye_h * open_ * s, 1.0)
        ell(ex, ey, t.eye_w * s, eh, fill=(240, 240, 236))
        ir = min(t.eye_h * s * 0.85, eh)
        ell(ex + gaze, ey, ir, ir, fill=t.iris)
        ell(ex + gaze, ey, ir * 0.45, ir * 0.45, fill=(15, 15, 15))
        by = ey - t.eye_h * s * t.brow_dy - raise_ * s
        bx0, bx1 = ex - t.eye_w * s * 1.1, ex + t.eye_w * s * 1.1
        tilt = t.brow_tilt * t.eye_w * s * side
        draw.line((bx0, by - tilt, bx1, by + tilt), fill=t.brow_color, width=max(1, int(t.brow_w * hh)))
    if t.glasses is not None:
        shape, col = t.glasses
        gw = max(2, int(0.012 * s))
        for side in (-1, 1):
            ex = fx + side * t.eye_dx * hw
            box = (ex - t.eye_w * s * 1.5, ey - t.eye_w * s * 1.1, ex + t.eye_w * s * 1.5, ey + t.eye_w * s * 1.1)
            (draw.ellipse if shape == 0 else draw.rectangle)(box, outline=col, width=gw)
        draw.line((fx - t.eye_dx * hw + t.eye_w * s * 1.5, ey, fx + t.eye_dx * hw - t.eye_w * s * 1.5, ey),
                  fill=col, width=gw)
    # Nose.
    ny0, ny1 = ey + hh * 0.05, ey + hh * t.nose_len + hh * 0.05
    nx = fx + yaw * 0.1 * hw
    nose_c = _shade(t.skin, 0.72)
    nw = t.nose_w * hw
    if t.nose_style == 0:
        draw.polygon([(nx, ny0), (nx - nw, ny1), (nx + nw, ny1)], fill=_shade(t.skin, 0.9))
        draw.line((nx - nw, ny1, nx + nw, ny1), fill=nose_c, width=max(1, int(0.01 * s)))
    elif t.nose_style == 1:
        draw.line((nx, ny0, nx + nw * 0.5, ny1), fill=nose_c, width=max(1, int(0.01 * s)))
        draw.line((nx - nw * 0.6, ny1, nx + nw * 0.6, ny1), fill=nose_c, width=max(1, int(0.012 * s)))
    else:
        ell(nx, ny1 - nw * 0.3, nw * 0.7, nw * 0.5, fill=_shade(t.skin, 0.85))
        for side in (-1, 1):
            ell(nx + side * nw * 0.4, ny1 - nw * 0.1, nw * 0.15, nw * 0.1, fill=nose_c)
    # Mouth: width stable, curvature / opening are expression.
    my = cy + t.mouth_y * hh
    mw = t.mouth_w * hw * r.uniform(0.94, 1.04)
    curve = r.uniform(-0.03, 0.106) * hh
    lh = max(1, int(t.lip_h * hh))
    if r.random() < 0.12:  # open mouth
        ell(fx, my + curve * 0.3, mw * 0.7, hh * r.uniform(0.04, 0.12), fill=(60, 20, 25), outline=t.lip, width=lh)
    else:
        xs = np.linspace(-1.0, 1.0, 7)
        pts = [(fx + x * mw, my - curve * (x * x - 0.5)) for x in xs]
        draw.line(pts, fill=t.lip, width=lh, joint="curve")


def _occlude(draw: ImageDraw.ImageDraw, s: int, r: np.random.Generator) -> None:
    """A random object in front of part of the face (hand, scarf, microphone ...)."""
    fill = _color(r.uniform(0, 255, 3))
    x0, y0 = r.uniform(0.2, 0.7, 2) * s
    w, h = r.uniform(0.15, 0.4, 2) * s
    (draw.rectangle if r.random() < 0.5 else draw.ellipse)((x0, y0, x0 + w, y0 + h), fill=fill)


def render_face(seed: int, identity: int, index: int, image_size: int = 112) -> Image.Image:
    """Render image ``index`` of identity ``identity`` as an RGB image; pure function of its arguments."""
    traits = _identity_traits(seed, identity)
    r = _rng(seed, 1, identity, index)
    n, s = image_size, 2 * image_size  # the face is drawn at 2x, then downsampled for anti-aliasing

    canvas = Image.new("RGB", (n, n))
    _draw_background(ImageDraw.Draw(canvas), n, r)
    face = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    _draw_face(ImageDraw.Draw(face), s, traits, r)

    # In-plane rotation, scale and translation in one affine warp about the centre. Nearest
    # sampling at 2x followed by the 2x2 box reduction is smooth enough and ~15x faster than bilinear.
    angle = math.radians(r.uniform(-6.0, 6.0))
    scale = r.uniform(0.92, 1.048)
    tx, ty = r.uniform(-0.032, 0.032, 2) * s
    c, sn = math.cos(angle) / scale, math.sin(angle) / scale
    ox, oy = s / 2 + tx, s / 2 + ty  # where the face centre lands; PIL's data maps output -> input
    data = (c, sn, s / 2 - c * ox - sn * oy, -sn, c, s / 2 + sn * ox - c * oy)
    face = face.transform((s, s), Image.Transform.AFFINE, data, resample=Image.Resampling.NEAREST).reduce(2)
    canvas.paste(face, (0, 0), face)
    if r.random() < 0.1:
        _occlude(ImageDraw.Draw(canvas), n, r)
    if r.random() < 0.08:
        canvas = canvas.filter(ImageFilter.GaussianBlur(r.uniform(0.5, 1.5) * n / 112))

    # Lighting: directional gradient, brightness, contrast, colour cast; then sensor noise.
    img = np.asarray(canvas, dtype=np.float32)
    theta = r.uniform(0, 2 * math.pi)
    axis = np.arange(n, dtype=np.float32) / np.float32(n) - np.float32(0.5)
    strength = r.uniform(0.0, 0.28)
    ramp = 1.0 + strength * (np.float32(math.cos(theta)) * axis[None, :] + np.float32(math.sin(theta)) * axis[:, None])
    gain = (r.uniform(0.84, 1.12) * r.uniform(0.94, 1.06, 3)).astype(np.float32)
    contrast = np.float32(r.uniform(0.84, 1.08))
    mean = img.mean(dtype=np.float32)
    img = ((img - mean) * contrast + mean) * ramp[:, :, None] * gain
    sigma = np.float32(r.uniform(0.8, 4.0) * math.sqrt(12.0) / 256.0)  # uniform noise of std 0.8..4
    noise = np.frombuffer(r.bytes(img.size), dtype=np.uint8).reshape(img.shape)
    img += (noise.astype(np.float32) - np.float32(127.5)) * sigma
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")


_KEY = re.compile(r"person_(\d+)/(\d+)\.png")


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


@register_source("synthetic")
class SyntheticSource(FaceSource):
    """Deterministic face-like identities rendered on the fly: ``person_NNNN/MMMM.png``.

    Args:
        root: accepted for a uniform signature and ignored (no files are read).
        num_identities: number of identities (classes).
        images_per_identity: images rendered per identity.
        image_size: side of the square RGB images, in pixels.
        seed: selects the population of identities and their images.

    Raises:
        ConfigError: an argument is not an integer in its allowed range.
    """

    name = "synthetic"

    def __init__(self, root: Any = None, num_identities: int = 40, images_per_identity: int = 24,
                 image_size: int = 112, seed: int = 0) -> None:
        super().__init__(None)
        self.num_identities = _check_int("num_identities", num_identities, 1, 100_000)
        self.images_per_identity = _check_int("images_per_identity", images_per_identity, 1, 100_000)
        self.image_size = _check_int("image_size", image_size, 32, 1024)
        self.seed = _check_int("seed", seed, 0, 2**63 - 1)
        self._id_digits = max(4, len(str(self.num_identities - 1)))
        self._img_digits = max(4, len(str(self.images_per_identity - 1)))

    def identity_name(self, identity: int) -> str:
        """The name of identity number ``identity`` (``person_0003``)."""
        return f"person_{identity:0{self._id_digits}d}"

    def key(self, identity: int, index: int) -> str:
        """The key of image ``index`` of identity number ``identity``."""
        return f"{self.identity_name(identity)}/{index:0{self._img_digits}d}.png"

    def records(self) -> list[FaceRecord]:
        return [FaceRecord(self.identity_name(i), self.key(i, j))
                for i in range(self.num_identities) for j in range(self.images_per_identity)]

    def parse_key(self, key: str) -> tuple[int, int]:
        """``(identity, index)`` of a key; :class:`DataError` naming it if it is not one of :meth:`records`."""
        m = _KEY.fullmatch(key) if isinstance(key, str) else None
        if m is not None:
            i, j = int(m.group(1)), int(m.group(2))
            if i < self.num_identities and j < self.images_per_identity and self.key(i, j) == key:
                return i, j
        raise DataError(f"no synthetic image {key!r}; keys look like {self.key(0, 0)!r} with identity < "
                        f"{self.num_identities} and index < {self.images_per_identity}")

    def open(self, key: str) -> Image.Image:
        i, j = self.parse_key(key)
        return render_face(self.seed, i, j, self.image_size)

    def path(self, key: str) -> PurePosixPath:
        """A virtual path for messages (``synthetic-seed0/person_0000/0000.png``); no file exists there."""
        self.parse_key(key)
        return PurePosixPath(f"synthetic-seed{self.seed}") / key

    def init_args(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("num_identities", "images_per_identity", "image_size", "seed")}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator_version": GENERATOR_VERSION}

    def __repr__(self) -> str:
        return f"SyntheticSource({', '.join(f'{name}={value!r}' for name, value in self.init_args().items())})"


__all__ = ["GENERATOR_VERSION", "SyntheticSource", "render_face"]
