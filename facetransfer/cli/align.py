"""``facetransfer align SRC DST``: aligned face chips of a whole folder, in the same layout.

    facetransfer align ../shared/data/lfw-devtrain/lfw aligned/lfw-dlib150
    facetransfer align photos/ chips/ --template arcface --size 112 --pick central

Every image file under SRC (any depth, e.g. ``<person>/<image>``) gets its chip at the same
relative path under DST (same file name and format; JPEG quality 95). ``DST/landmarks.csv``
lists each aligned image with the number of faces found, the one picked, its score, box and
five landmarks (in the source image's pixels); ``DST/no_face.csv`` lists every image that
gave no chip and why (no face, unreadable file). Every image is in exactly one of the two.
Detections are cached on disk (``--cache``), so a second run, or another template or size,
does not detect again.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..detection.aligner import AlignedImage, Aligner
from ..detection.cache import CACHE_FILENAME, default_cache_dir
from ..detection.registry import list_detectors
from ..detection.templates import list_templates
from ..errors import ConfigError, DataError
from ..io.images import is_image_name

LANDMARKS_CSV = "landmarks.csv"
NO_FACE_CSV = "no_face.csv"
LANDMARK_COLUMNS = [f"{part}_{axis}" for part in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
                    for axis in ("x", "y")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facetransfer align",
        description="Detect, align and crop the face of every image under SRC into DST (same layout), "
        f"with {LANDMARKS_CSV} and {NO_FACE_CSV}.",
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", help="folder of images, e.g. <person>/<image> (searched recursively)")
    parser.add_argument("dst", help="output folder (created); chips keep their relative paths")
    parser.add_argument("--detector", default="mtcnn", help=f"face detector: {', '.join(list_detectors())}")
    parser.add_argument("--template", default="dlib", help=f"landmark template: {', '.join(list_templates())}")
    parser.add_argument("--size", type=int, default=None, help="chip side in pixels (default: the template's: dlib 150, arcface 112)")
    parser.add_argument("--pick", default="largest_central", choices=["largest_central", "largest", "central"],
                        help="which face when there are several (default: the largest, counting distance from the centre against it)")
    parser.add_argument("--min-face-fraction", type=float, default=None,
                        help="smallest face searched, as a fraction of the image's shorter side (mtcnn default 0.1)")
    parser.add_argument("--cache", default=None,
                        help=f"landmark cache file, or 'none' (default: {default_cache_dir() / CACHE_FILENAME})")
    parser.add_argument("--batch-size", type=int, default=16, help="images per detector batch (16: fastest on a 2-core CPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the chips")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def list_images(src: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``src`` (recursively, hidden entries and ``exclude`` left out), sorted."""
    found = []
    for folder, dirs, files in os.walk(src):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or here / d != exclude))
        found += [here / f for f in sorted(files) if not f.startswith(".") and is_image_name(f)]
    return found


def _save(image: Image.Image, dest: Path, quality: int) -> None:
    """Write a chip in the format its file name says, atomically (a killed run leaves no half file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    fmt = Image.registered_extensions().get(dest.suffix.lower())
    try:
        if fmt == "JPEG":
            image.save(tmp, format=fmt, quality=quality)
        else:
            image.save(tmp, format=fmt)
        os.replace(tmp, dest)
    except (OSError, ValueError, KeyError) as err:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {dest} (format {fmt}): {err}") from None


def _landmark_row(key: str, result: AlignedImage) -> list:
    loc = result.location
    assert loc is not None
    return [
        key, loc.faces, loc.index, f"{loc.score:.4f}", *[f"{v:.2f}" for v in loc.box.tolist()],
        *[f"{v:.2f}" for v in loc.landmarks.flatten().tolist()], *loc.image_size,
    ]


def align_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer align``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse_args(list(argv))
    src, dst = Path(args.src).expanduser(), Path(args.dst).expanduser()
    if not src.is_dir():
        raise DataError(f"source folder {src} does not exist or is not a folder")
    if args.size is not None and args.size < 8:
        raise ConfigError(f"--size must be >= 8 pixels, got {args.size}")
    if not 1 <= args.quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, got {args.quality}")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"DST must differ from SRC ({src}): the chips would replace the photos")
    paths = list_images(src, exclude=dst.resolve() if dst.resolve().is_relative_to(src.resolve()) else None)
    if not paths:
        raise DataError(f"no image files under {src} (looked for {', '.join(('.jpg', '.png', '.pgm', '...'))})")
    detector_args = {} if args.min_face_fraction is None else {"min_face_fraction": args.min_face_fraction}
    cache = None if args.cache == "none" else (args.cache or "default")
    aligner = Aligner(
        args.detector, args.template, args.size, pick=args.pick, cache=cache, device=args.device,
        batch_size=args.batch_size, detector_args=detector_args,
    )
    dst.mkdir(parents=True, exist_ok=True)
    keys = [p.relative_to(src).as_posix() for p in paths]
    key_of = {os.fspath(p): k for p, k in zip(paths, keys)}
    aligned = 0
    with open(dst / LANDMARKS_CSV, "w", newline="") as lm_file, open(dst / NO_FACE_CSV, "w", newline="") as nf_file:
        landmarks_csv, no_face_csv = csv.writer(lm_file), csv.writer(nf_file)
        landmarks_csv.writerow(["key", "faces", "picked", "score", "x1", "y1", "x2", "y2", *LANDMARK_COLUMNS,
                                "image_width", "image_height"])
        no_face_csv.writerow(["key", "reason"])
        for result in aligner.align_files(paths, progress=not args.no_progress):
            key = key_of[result.path]
            if result.image is None:
                no_face_csv.writerow([key, str(result.error)])
                continue
            _save(result.image, dst / key, args.quality)
            landmarks_csv.writerow(_landmark_row(key, result))
            aligned += 1
    missing = len(paths) - aligned
    print(
        f"aligned {aligned} of {len(paths)} images into {dst} ({aligner.template.name} template, "
        f"{aligner.size} px, {aligner.finder()}); {missing} without a chip listed in {dst / NO_FACE_CSV}",
        file=sys.stdout,
    )
    return 0


__all__ = ["LANDMARKS_CSV", "NO_FACE_CSV", "align_command", "build_parser", "list_images"]
