"""Raw photos next to their aligned face chips, as one picture (docs/img/alignment_grid.png).

Uses the Aligner from Python: MTCNN finds the faces and five landmarks, each face is warped onto
the dlib template (150 px, what dlib_resnet expects). Rows: LFW's original images, their chips,
the deep-funneled images, their chips; the landmarks the detector found are drawn on the raw
images::

    python examples/alignment_grid.py --root ../shared/data/lfw-devtrain --out docs/img/alignment_grid.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from facetransfer.data.lfw import LFWSource
from facetransfer.detection import Aligner

PEOPLE = ["Aaron_Peirsol/Aaron_Peirsol_0002", "George_W_Bush/George_W_Bush_0010", "Serena_Williams/Serena_Williams_0003",
          "Colin_Powell/Colin_Powell_0005", "Laura_Bush/Laura_Bush_0032", "Tony_Blair/Tony_Blair_0007"]
COLOURS = ["#ff4040", "#40ff40", "#4080ff", "#ffff40", "#ff40ff"]


def marked(image: Image.Image, landmarks, tile: int) -> Image.Image:
    """The photo scaled to ``tile`` px with the five landmarks drawn."""
    scale = tile / max(image.size)
    shown = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(shown)
    for (x, y), colour in zip(landmarks.tolist(), COLOURS):
        draw.ellipse([x * scale - 2.5, y * scale - 2.5, x * scale + 2.5, y * scale + 2.5], fill=colour)
    return shown


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="../shared/data/lfw-devtrain", help="LFW folder with lfw/ and lfw-deepfunneled/")
    parser.add_argument("--out", default="docs/img/alignment_grid.png")
    parser.add_argument("--tile", type=int, default=150, help="side of each picture in the grid")
    parser.add_argument("--people", type=int, default=len(PEOPLE))
    args = parser.parse_args(argv)
    aligner = Aligner("mtcnn", "dlib", cache=None)
    rows = []
    for variant in ("original", "deepfunneled"):
        folder = LFWSource(args.root, variant=variant).image_dir()
        raw, chips = [], []
        for person in PEOPLE[: args.people]:
            path = folder / f"{person}.jpg"
            location = aligner.locate(path)
            raw.append(marked(Image.open(path).convert("RGB"), location.landmarks, args.tile))
            chips.append(aligner.align(path).resize((args.tile, args.tile), Image.Resampling.BILINEAR))
        rows += [raw, chips]
    pad = 4
    grid = Image.new("RGB", (len(rows[0]) * (args.tile + pad) + pad, len(rows) * (args.tile + pad) + pad), "white")
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            grid.paste(picture, (pad + c * (args.tile + pad), pad + r * (args.tile + pad)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)  # a small file for the docs
    print(f"wrote {out} ({grid.width}x{grid.height}): rows original, aligned, deep-funneled, aligned")
    return out


if __name__ == "__main__":
    main()
