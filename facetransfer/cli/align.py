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

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from jsonargparse.typing import restricted_number_type
from PIL import Image

from ..config_errors import UnitFraction
from ..errors import ConfigError, DataError
from ..io.images import image_files_under
from .options import LoadingOptions, ToolParser, show_progress

if TYPE_CHECKING:
    from ..detection import AlignedImage

LANDMARKS_CSV = "landmarks.csv"
NO_FACE_CSV = "no_face.csv"
LANDMARK_COLUMNS = [f"{part}_{axis}" for part in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
                    for axis in ("x", "y")]
ChipSize = restricted_number_type("ChipSize", int, (">=", 8))
JpegQuality = restricted_number_type("JpegQuality", int, [(">=", 1), ("<=", 100)])


def build_parser() -> ToolParser:
    parser = ToolParser("align", "Detect, align and crop the face of every image under SRC into DST (same layout), "
                        f"with {LANDMARKS_CSV} and {NO_FACE_CSV}.", epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("src", type=str, help="folder of images, e.g. <person>/<image> (searched recursively)")
    parser.add_argument("dst", type=str, help="output folder (created); chips keep their relative paths")
    parser.add_argument("--detector", type=str, default="mtcnn", help="face detector: mtcnn, or a plug-in's")
    parser.add_argument("--template", type=str, default="dlib", help="landmark template: dlib or arcface")
    parser.add_argument("--size", type=Optional[ChipSize], default=None,
                        help="chip side in pixels (default: the template's: dlib 150, arcface 112)")
    parser.add_argument("--pick", type=str, default="largest_central",
                        help="which face when there are several: largest_central (the largest, counting distance "
                        "from the centre against it), largest or central")
    parser.add_argument("--min_face_fraction", type=Optional[UnitFraction], default=None,
                        help="smallest face searched, as a fraction of the image's shorter side (mtcnn default 0.1)")
    parser.add_argument("--cache", type=Optional[str], default=None,
                        help="landmark cache file, or 'none' (default: landmarks.sqlite in $FACETRANSFER_CACHE_DIR, "
                        "else ~/.cache/facetransfer)")
    parser.add_groups(LoadingOptions, skip={"num_workers"})
    parser.set_defaults(batch_size=16)  # images per detector batch: 16 is fastest on a 2-core CPU
    parser.add_argument("--quality", type=JpegQuality, default=95, help="JPEG quality of the chips")
    parser.add_progress()
    return parser


def _save(image: Image.Image, dest: Path, quality: int) -> None:
    """Write a chip in the format its file name says, atomically (a killed run leaves no half file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    fmt = Image.registered_extensions().get(dest.suffix.lower())
    try:
        image.save(tmp, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
        os.replace(tmp, dest)
    except (OSError, ValueError, KeyError) as err:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {dest} (format {fmt}): {err}") from None


def _landmark_row(key: str, result: AlignedImage) -> list:
    loc = result.location
    points = [*loc.box.tolist(), *loc.landmarks.flatten().tolist()]
    return [key, loc.faces, loc.index, f"{loc.score:.4f}", *(f"{v:.2f}" for v in points), *loc.image_size]


def align_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer align``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse(argv)
    from ..detection import Aligner  # imports torchvision: not for --help

    src, dst = Path(args.src).expanduser(), Path(args.dst).expanduser()
    if not src.is_dir():
        raise DataError(f"source folder {src} does not exist or is not a folder")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"DST must differ from SRC ({src}): the chips would replace the photos")
    paths = image_files_under(src, exclude=os.path.realpath(dst))
    if not paths:
        raise DataError(f"no image files under {src} (looked for .jpg, .png, .pgm, ...)")
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
        for result in aligner.align_files(paths, progress=show_progress(args)):
            key = key_of[result.path]
            if result.image is None:
                no_face_csv.writerow([key, str(result.error)])
                continue
            _save(result.image, dst / key, args.quality)
            landmarks_csv.writerow(_landmark_row(key, result))
            aligned += 1
    missing = len(paths) - aligned
    print(f"aligned {aligned} of {len(paths)} images into {dst} ({aligner.template.name} template, "
          f"{aligner.size} px, {aligner.finder()}); {missing} without a chip listed in {dst / NO_FACE_CSV}")
    return 0


__all__ = ["LANDMARKS_CSV", "NO_FACE_CSV", "align_command", "build_parser"]
