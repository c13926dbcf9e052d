"""``facetransfer gallery``: enroll people, name new photos, reject strangers -- from the command line.

    facetransfer gallery enroll --root staff/ --out staff.gallery --backbone dlib_resnet --weights FACE_API
    facetransfer gallery enroll --root staff/ --out staff.gallery --ckpt_path runs/.../best.ckpt --match mean
    facetransfer gallery identify --gallery staff.gallery door_camera/ visitor.jpg --csv matches.csv
    facetransfer gallery add --gallery staff.gallery --root new_staff/
    facetransfer gallery remove --gallery staff.gallery alice bob
    facetransfer gallery show staff.gallery

``enroll`` embeds every ``<root>/<person>/<image>`` and chooses the threshold on the enrolled
images (``Gallery.calibrate``, leave-one-out); ``add`` and ``remove`` choose it again the same
way. The file records the model (backbone and weights names, or the checkpoint, and a
fingerprint of the weights): ``identify`` rebuilds that model and refuses another one.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional

from jsonargparse import Namespace
from jsonargparse.typing import PositiveInt

from .. import verification  # imported when used: not for --help
from ..config_errors import CosineSimilarity, UnitFraction
from ..data.sources import FolderSource
from ..errors import ConfigError, DataError
from ..io.atomic import atomic_write
from ..io.images import list_image_files
from .options import (
    AlignOptions,
    LoadingOptions,
    ModelOptions,
    ToolParser,
    build_model,
    default_face_crop,
    show_progress,
    tta_of,
)

#: what ``identify`` prints for a probe below the threshold
UNKNOWN = "unknown"


# --- the model ------------------------------------------------------------------------------------

def _describe_source(source: dict[str, Any] | None) -> str:
    if not source:
        return "not recorded"
    if "ckpt_path" in source:
        return f"checkpoint {source['ckpt_path']}"
    extra = f", input {source['input_size']} px" if source.get("input_size") else ""
    weights = source.get("weights") or f"file {source.get('weights_path')}"
    return f"{source['backbone']} with weights {weights}{extra}"


def _open_gallery(path: str, args: Namespace):
    """Load a gallery with its recorded model (or the one given on the command line, if any)."""
    info = verification.Gallery.read_metadata(path)  # a missing or foreign file fails before any model loads
    source = ModelOptions.of(args).source() or info["model_source"]
    if source and "ckpt_path" in source and not Path(source["ckpt_path"]).is_file():
        raise ConfigError(
            f"{path} was enrolled with the checkpoint {source['ckpt_path']}, which does not exist any more; "
            "give its new place with --ckpt_path"
        )
    if not source:
        raise ConfigError(
            f"{path} does not record how to rebuild its model ({info['model']['backbone']}); "
            "give --ckpt_path, or --backbone with --weights"
        )
    loading = LoadingOptions.of(args)
    model = build_model(source).to(loading.torch_device)
    gallery = verification.Gallery.load(path, model, batch_size=loading.batch_size, num_workers=loading.workers)
    gallery.model_source = source
    return gallery


# --- threshold ------------------------------------------------------------------------------------
def _choose_threshold(gallery: verification.Gallery, threshold: float | None, target_far: float | None) -> str:
    """Set the threshold (fixed, or calibrated on the enrolled images) -> how, in words."""
    if threshold is not None:
        gallery.threshold, gallery.calibration = threshold, None
        return "set by hand"
    try:
        gallery.calibrate(target_far)
    except ConfigError as err:
        raise ConfigError(f"{err}; or give a fixed --threshold") from None
    return _how_chosen(gallery.calibration)


def _how_chosen(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return "set by hand"
    counts = f"{calibration.get('genuine', '?')} genuine and {calibration.get('impostor', '?')} impostor scores"
    far = calibration.get("target_far")
    rule = "best separation" if far is None else f"at most {far:g} of impostor scores accepted"
    return f"calibrated on the enrolled images, {rule} (leave-one-out, {counts})"


def _recalibrate(gallery: verification.Gallery) -> str:
    """After add/remove: choose the threshold again as it was chosen, when it was calibrated."""
    if gallery.calibration is None:
        return f"threshold {gallery.threshold} kept (set by hand)"
    try:
        gallery.calibrate(gallery.calibration.get("target_far"))
    except ConfigError as err:
        return f"threshold {gallery.threshold:.4f} kept: it cannot be calibrated again ({err})"
    return f"threshold {gallery.threshold:.4f}: {_how_chosen(gallery.calibration)}"


# --- the subcommands ----------------------------------------------------------------------------------
def _enroll(args: Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; use 'facetransfer gallery add' to extend it, or --overwrite to replace it")
    if args.threshold is not None and args.target_far is not None:
        raise ConfigError("give --threshold or --target_far, not both")
    tta = tta_of(args)
    root = Path(args.root).resolve()
    verification.list_identity_images(root, args.images_per_person)  # bad folders fail before a model loads
    source = ModelOptions.of(args).source(required=True)
    if "backbone" in source and not ({"weights", "weights_path"} & set(source)):
        raise ConfigError(
            f"--backbone {args.backbone} needs --weights or --weights_path: a gallery needs trained features, "
            "and random weights could not be rebuilt to identify later"
        )
    loading = LoadingOptions.of(args)
    model = build_model(source).to(loading.torch_device)
    face_crop = args.face_crop or default_face_crop(model, args.align, FolderSource)
    gallery = verification.Gallery(
        model, match=args.match, face_crop=face_crop, tta=tta,
        batch_size=loading.batch_size, num_workers=loading.workers, align=args.align,
        align_template=args.align_template,
    )
    gallery.model_source = source
    enrolled = gallery.enroll_folder(root, images_per_identity=args.images_per_person, progress=show_progress(args))
    how = _choose_threshold(gallery, args.threshold, args.target_far)
    gallery.save(out)
    print(f"enrolled {len(gallery)} people, {sum(enrolled.values())} images from {root} ({_describe_source(source)}, "
          f"face_crop {face_crop:g}, match {gallery.match}" + (f", aligned by {args.align}" if args.align != "none" else "")
          + ")")
    print(f"threshold {gallery.threshold:.4f}: {how}")
    print(f"wrote {out}")
    return 0


def _identify(args: Namespace) -> int:
    probes = list_image_files(args.images)
    gallery = _open_gallery(args.gallery, args)
    matches = gallery.identify_many(probes)
    rows = [(str(path), m.nearest, m.score, m.name or UNKNOWN) for path, m in zip(probes, matches)]
    _print_matches(rows, gallery.threshold)
    if args.csv:
        with atomic_write(args.csv, newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["path", "identity", "similarity", "decision"])
            writer.writerows((path, nearest, f"{score:.6f}", decision) for path, nearest, score, decision in rows)
        print(f"wrote {args.csv}")
    return 0


def _print_matches(rows: list[tuple[str, str, float, str]], threshold: float | None) -> None:
    """image, the nearest enrolled person and the similarity, and the decision (that person, or unknown)."""
    width = min(60, max(len("image"), *(len(r[0]) for r in rows)))
    name_width = max(len("identity"), *(len(r[1]) for r in rows))
    print(f"{'image':<{width}}  {'identity':<{name_width}}  similarity  decision")
    for path, nearest, score, decision in rows:
        shown = path if len(path) <= width else "..." + path[-(width - 3):]
        print(f"{shown:<{width}}  {nearest:<{name_width}}  {score:10.3f}  {decision}")
    unknown = sum(r[3] == UNKNOWN for r in rows)
    limit = "no threshold" if threshold is None else f"threshold {threshold:.4f}"
    print(f"{len(rows)} images: {len(rows) - unknown} named, {unknown} {UNKNOWN} ({limit})")


def _add(args: Namespace) -> int:
    gallery = _open_gallery(args.gallery, args)
    root, known = Path(args.root).resolve(), set(gallery.names)
    listed = sum(map(len, verification.list_identity_images(root, args.images_per_person).values()))
    added = gallery.enroll_folder(root, images_per_identity=args.images_per_person, progress=show_progress(args))
    if not added:
        raise DataError(f"every image under {root} is already enrolled in {args.gallery}")
    how = _recalibrate(gallery)
    gallery.save(args.gallery)
    images = sum(added.values())
    print(f"added {images} images of {len(added)} people ({len(set(added) - known)} new)"
          + (f"; {listed - images} already enrolled images skipped" if listed > images else ""))
    print(f"{len(gallery)} people, {len(gallery.labels)} images; {how}")
    print(f"wrote {args.gallery}")
    return 0


def _remove(args: Namespace) -> int:
    info = verification.Gallery.read_metadata(args.gallery)
    missing = [name for name in args.names if name not in info["names"]]
    if missing:
        raise ConfigError(f"not enrolled in {args.gallery}: {', '.join(missing)}; enrolled: {', '.join(info['names'])}")
    gallery = _open_gallery(args.gallery, args)
    names = list(dict.fromkeys(args.names))
    for name in names:
        gallery.remove(name)
    how = _recalibrate(gallery)
    gallery.save(args.gallery)
    print(f"removed {', '.join(names)}; {len(gallery)} people, {len(gallery.labels)} images left; {how}")
    print(f"wrote {args.gallery}")
    return 0


def _show(args: Namespace) -> int:
    info = verification.Gallery.read_metadata(args.file)
    model = info["model"]
    tta = model.get("tta", "flip" if model["flip"] else "none")  # galleries of earlier releases record flip only
    threshold = "none (never unknown)" if info["threshold"] is None else f"{info['threshold']:.4f}"
    print(f"{args.file}: {len(info['names'])} people, {info['images']} images")
    print(f"threshold {threshold}: {_how_chosen(info['calibration'])}; match {info['match']}")
    print(f"model {_describe_source(info['model_source'])}: {model['backbone']}, {model['num_features']}-d embeddings, "
          f"weights fingerprint {model['weights_fingerprint']}, face_crop {model['face_crop']:g}"
          + {"none": "", "flip": ", flip"}.get(tta, f", tta {tta}")
          + (f", aligned by {model['align']}" if model.get("align", "none") != "none" else ""))
    print("people: " + ", ".join(f"{name} ({count})" for name, count in info["counts"].items()))
    return 0


# --- parser -----------------------------------------------------------------------------------------
def _subcommand(parser: ToolParser, name: str, help: str) -> ToolParser:
    """A subcommand that rebuilds the model of its gallery (or takes another one with the model options)."""
    sub = parser.subcommand(name, help)
    sub.add_groups(ModelOptions, LoadingOptions)
    sub.add_progress()
    return sub


def build_parser() -> ToolParser:
    parser = ToolParser("gallery", "Open-set identification: enroll people from <root>/<person>/<image> folders, then "
                        "name new photos or say 'unknown'. Without model options, a command uses the model the "
                        "gallery records.", epilog=__doc__.split("\n", 2)[2])
    enroll = _subcommand(parser, "enroll", "create a gallery from person folders")
    enroll.add_argument("--root", type=str, required=True, help="<root>/<person>/<image>")
    enroll.add_argument("--out", type=str, required=True, help="the gallery file to write")
    enroll.add_face_crop("the checkpoint's, else 1.0")
    enroll.add_groups(AlignOptions)  # the gallery remembers it: identify and add align the same way
    enroll.add_argument("--match", type=Literal["mean", "nearest"], default="nearest",
                        help="compare a probe with each person's mean embedding or most similar image")
    enroll.add_argument("--images_per_person", type=Optional[PositiveInt], default=None,
                        help="enroll the first N images (natural order)")
    enroll.add_tta()  # the gallery remembers it: identify and add embed the same way
    enroll.add_argument("--target_far", type=Optional[UnitFraction], default=None,
                        help="choose the threshold accepting at most this fraction of impostor scores "
                        "(default: the best separation)")
    enroll.add_argument("--threshold", type=Optional[CosineSimilarity], default=None,
                        help="a fixed cosine-similarity threshold (-1..1)")
    enroll.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    identify = _subcommand(parser, "identify", "name the faces in images (or say unknown)")
    identify.add_argument("--gallery", type=str, required=True, help="a gallery file")
    identify.add_argument("images", type=str, nargs="+", metavar="IMAGES_OR_DIR",
                          help="image files or folders (searched recursively)")
    identify.add_argument("--csv", type=Optional[str], default=None,
                          help="also write path,identity,similarity,decision rows to this file")

    add = _subcommand(parser, "add", "enroll more people or more images of enrolled people")
    add.add_argument("--gallery", type=str, required=True, help="the gallery file to extend (rewritten)")
    add.add_argument("--root", type=str, required=True, help="<root>/<person>/<image>")
    add.add_argument("--images_per_person", type=Optional[PositiveInt], default=None,
                     help="the first N images of each folder")

    remove = _subcommand(parser, "remove", "forget people")
    remove.add_argument("--gallery", type=str, required=True, help="the gallery file (rewritten)")
    remove.add_argument("names", type=str, nargs="+", metavar="NAME", help="enrolled people to remove")

    show = parser.subcommand("show", "people, images, threshold and model of a gallery")
    show.add_argument("file", type=str, help="a gallery file")
    return parser


def gallery_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer gallery``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse(argv)
    action = {"enroll": _enroll, "identify": _identify, "add": _add, "remove": _remove, "show": _show}[args.action]
    return action(args[args.action])


__all__ = ["UNKNOWN", "build_parser", "gallery_command"]
