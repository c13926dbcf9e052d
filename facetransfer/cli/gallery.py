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

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..io.atomic import write_text_atomic
from ..io.images import list_image_files
from ..verification.embedder import add_align_options
from ..verification.gallery import Gallery, list_identity_images
from .options import add_progress_option, show_progress

#: what ``identify`` prints for a probe below the threshold
UNKNOWN = "unknown"


# --- the model ------------------------------------------------------------------------------------
def model_source(args: argparse.Namespace) -> dict[str, Any] | None:
    """The model options given (``--ckpt_path`` or ``--backbone`` ...) as a gallery's ``model_source``."""
    if args.ckpt_path:
        if args.weights or args.weights_path or args.input_size:
            raise ConfigError("--weights/--weights_path/--input_size apply to --backbone; a checkpoint holds its own")
        return {"ckpt_path": str(Path(args.ckpt_path).resolve())}
    if args.backbone:
        if not (args.weights or args.weights_path):
            raise ConfigError(
                f"--backbone {args.backbone} needs --weights or --weights_path: a gallery needs trained features, "
                "and random weights could not be rebuilt to identify later"
            )
        source = {"backbone": args.backbone, "weights": args.weights, "weights_path": args.weights_path,
                  "input_size": args.input_size}
        return {key: value for key, value in source.items() if value is not None}
    if args.weights or args.weights_path or args.input_size:
        raise ConfigError("--weights/--weights_path/--input_size need --backbone")
    return None


def build_model(source: dict[str, Any]):
    """The :class:`~facetransfer.FaceClassifier` a ``model_source`` describes, in eval mode."""
    from ..io.checkpoint import CheckpointInfo
    from ..training.module import FaceClassifier, load_model

    if "ckpt_path" in source:
        CheckpointInfo.read(source["ckpt_path"])  # a missing or foreign file: one clear error
        return load_model(source["ckpt_path"])
    if "backbone" not in source:
        raise ConfigError(f"unusable model description in the gallery: {source}")
    model = FaceClassifier(
        source["backbone"],
        weights=source.get("weights"),
        weights_path=source.get("weights_path"),
        backbone_args=source.get("backbone_args"),
        input_size=source.get("input_size"),
    )
    return model.eval()


def _default_face_crop(source: dict[str, Any]) -> float:
    """A checkpoint's training face crop, else 1.0 (the whole image)."""
    if "ckpt_path" in source:
        from ..io.checkpoint import CheckpointInfo

        crop = CheckpointInfo.read(source["ckpt_path"]).face_crop
        return 1.0 if crop is None else crop
    return 1.0


def _describe_source(source: dict[str, Any] | None) -> str:
    if not source:
        return "not recorded"
    if "ckpt_path" in source:
        return f"checkpoint {source['ckpt_path']}"
    extra = f", input {source['input_size']} px" if source.get("input_size") else ""
    weights = source.get("weights") or f"file {source.get('weights_path')}"
    return f"{source['backbone']} with weights {weights}{extra}"


def _open_gallery(path: str, args: argparse.Namespace) -> Gallery:
    """Load a gallery with its recorded model (or the one given on the command line, if any)."""
    info = Gallery.read_metadata(path)  # a missing or foreign file fails before any model loads
    source = model_source(args) or info["model_source"]
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
    model = build_model(source).to(_device(args))
    gallery = Gallery.load(path, model, batch_size=args.batch_size, num_workers=_workers(args))
    gallery.model_source = source
    return gallery


def _device(args: argparse.Namespace) -> str:
    import torch

    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _workers(args: argparse.Namespace) -> int:
    from ..data.datamodule import default_num_workers

    return default_num_workers() if args.num_workers is None else args.num_workers


# --- threshold ------------------------------------------------------------------------------------
def _choose_threshold(gallery: Gallery, threshold: float | None, target_far: float | None) -> str:
    """Set the threshold (fixed, or calibrated on the enrolled images) -> how, in words."""
    if threshold is not None:
        gallery.threshold, gallery.calibration = float(threshold), None
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


def _recalibrate(gallery: Gallery) -> str:
    """After add/remove: choose the threshold again as it was chosen, when it was calibrated."""
    if gallery.calibration is None:
        return f"threshold {gallery.threshold} kept (set by hand)"
    try:
        gallery.calibrate(gallery.calibration.get("target_far"))
    except ConfigError as err:
        return f"threshold {gallery.threshold:.4f} kept: it cannot be calibrated again ({err})"
    return f"threshold {gallery.threshold:.4f}: {_how_chosen(gallery.calibration)}"


# --- the subcommands ----------------------------------------------------------------------------------
def _enroll(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; use 'facetransfer gallery add' to extend it, or --overwrite to replace it")
    if args.face_crop is not None and not 0 < args.face_crop <= 1:
        raise ConfigError(f"--face_crop must be in (0, 1], got {args.face_crop}")
    _check_target_far(args.target_far)
    root = Path(args.root).resolve()
    found = list_identity_images(root, args.images_per_person)  # bad folders fail before the model loads
    source = model_source(args)
    if source is None:
        raise ConfigError("give the model: --backbone NAME --weights W, or --ckpt_path CK")
    default_crop = 1.0 if args.align != "none" else _default_face_crop(source)
    face_crop = default_crop if args.face_crop is None else args.face_crop
    model = build_model(source).to(_device(args))
    gallery = Gallery(model, match=args.match, face_crop=face_crop, flip=args.flip, batch_size=args.batch_size,
                      num_workers=_workers(args), align=args.align, align_template=args.align_template)
    gallery.model_source = source
    gallery.enroll_folder(root, images_per_identity=args.images_per_person, progress=show_progress(args))
    how = _choose_threshold(gallery, args.threshold, args.target_far)
    gallery.save(out)
    images = sum(len(files) for files in found.values())
    print(f"enrolled {len(gallery)} people, {images} images from {root} ({_describe_source(source)}, "
          f"face_crop {face_crop:g}, match {gallery.match}" + (f", aligned by {args.align}" if args.align != "none" else "")
          + ")")
    print(f"threshold {gallery.threshold:.4f}: {how}")
    print(f"wrote {out}")
    return 0


def _identify(args: argparse.Namespace) -> int:
    probes = list_image_files(args.images)
    gallery = _open_gallery(args.gallery, args)
    matches = gallery.identify_many(probes)
    rows = [(str(path), m.name or UNKNOWN, m.score, m.nearest) for path, m in zip(probes, matches)]
    _print_matches(rows, gallery.threshold)
    if args.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "identity", "score", "nearest"])
        writer.writerows((path, name, f"{score:.6f}", nearest) for path, name, score, nearest in rows)
        write_text_atomic(args.csv, buffer.getvalue())
        print(f"wrote {args.csv}")
    return 0


def _print_matches(rows: list[tuple[str, str, float, str]], threshold: float | None) -> None:
    width = min(60, max(len("image"), *(len(r[0]) for r in rows)))
    name_width = max(len("identity"), *(len(r[1]) for r in rows))
    print(f"{'image':<{width}}  {'identity':<{name_width}}  score   nearest")
    for path, name, score, nearest in rows:
        shown = path if len(path) <= width else "..." + path[-(width - 3):]
        print(f"{shown:<{width}}  {name:<{name_width}}  {score:.3f}  {nearest}")
    unknown = sum(r[1] == UNKNOWN for r in rows)
    limit = "no threshold" if threshold is None else f"threshold {threshold:.4f}"
    print(f"{len(rows)} images: {len(rows) - unknown} named, {unknown} {UNKNOWN} ({limit})")


def _add(args: argparse.Namespace) -> int:
    gallery = _open_gallery(args.gallery, args)
    root = Path(args.root).resolve()
    found = list_identity_images(root, args.images_per_person)
    enrolled = {str(Path(source).resolve()) for source in gallery.sources if source}
    fresh = {name: [f for f in files if str(f.resolve()) not in enrolled] for name, files in found.items()}
    fresh = {name: files for name, files in fresh.items() if files}
    skipped = sum(len(files) for files in found.values()) - sum(len(files) for files in fresh.values())
    if not fresh:
        raise DataError(f"every image under {root} is already enrolled in {args.gallery}")
    new_people = [name for name in fresh if name not in gallery]
    embeddings = gallery.embedder.embed_files([f for files in fresh.values() for f in files], progress=show_progress(args))
    start = 0
    for name, files in fresh.items():
        gallery.add_embeddings(name, embeddings[start : start + len(files)], [str(f) for f in files])
        start += len(files)
    how = _recalibrate(gallery)
    gallery.save(args.gallery)
    print(f"added {start} images of {len(fresh)} people ({len(new_people)} new)"
          + (f"; {skipped} already enrolled images skipped" if skipped else ""))
    print(f"{len(gallery)} people, {len(gallery.labels)} images; {how}")
    print(f"wrote {args.gallery}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    info = Gallery.read_metadata(args.gallery)
    missing = [name for name in args.names if name not in info["names"]]
    if missing:
        raise ConfigError(f"not enrolled in {args.gallery}: {', '.join(missing)}; enrolled: {', '.join(info['names'])}")
    gallery = _open_gallery(args.gallery, args)
    for name in dict.fromkeys(args.names):
        gallery.remove(name)
    how = _recalibrate(gallery)
    gallery.save(args.gallery)
    print(f"removed {', '.join(dict.fromkeys(args.names))}; {len(gallery)} people, {len(gallery.labels)} images left; {how}")
    print(f"wrote {args.gallery}")
    return 0


def _show(args: argparse.Namespace) -> int:
    info = Gallery.read_metadata(args.file)
    model = info["model"]
    threshold = "none (never unknown)" if info["threshold"] is None else f"{info['threshold']:.4f}"
    print(f"{args.file}: {len(info['names'])} people, {info['images']} images")
    print(f"threshold {threshold}: {_how_chosen(info['calibration'])}; match {info['match']}")
    print(f"model {_describe_source(info['model_source'])}: {model['backbone']}, {model['num_features']}-d embeddings, "
          f"weights fingerprint {model['weights_fingerprint']}, face_crop {model['face_crop']:g}"
          + (", flip" if model.get("flip") else "")
          + (f", aligned by {model['align']}" if model.get("align", "none") != "none" else ""))
    print("people: " + ", ".join(f"{name} ({count})" for name, count in info["counts"].items()))
    return 0


def _check_target_far(target_far: float | None) -> None:
    if target_far is not None and not 0 <= target_far < 1:
        raise ConfigError(f"--target_far must be in [0, 1), got {target_far}")


# --- parser -----------------------------------------------------------------------------------------
def _model_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("model" + ("" if required else " (default: the one the gallery records)"))
    which = group.add_mutually_exclusive_group(required=required)
    which.add_argument("--backbone", help="a registered backbone (facetransfer backbones), with --weights")
    which.add_argument("--ckpt_path", help="a FaceClassifier checkpoint (its backbone's features)")
    group.add_argument("--weights", default=None, help="pretrained weights of --backbone: FACE_API, IMAGENET1K_V1 ...")
    group.add_argument("--weights_path", default=None, help="a local state dict for --backbone")
    group.add_argument("--input_size", type=int, default=None, help="input side in pixels (default: the backbone's)")


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch_size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--num_workers", type=int, default=None, help="image-loading workers (default: CPUs - 1)")
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    add_progress_option(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facetransfer gallery",
        description="Open-set identification: enroll people from <root>/<person>/<image> folders, then name "
        "new photos or say 'unknown'.",
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="{enroll,identify,add,remove,show}")

    enroll = sub.add_parser("enroll", help="create a gallery from person folders")
    enroll.add_argument("--root", required=True, help="<root>/<person>/<image>")
    enroll.add_argument("--out", required=True, help="the gallery file to write")
    _model_options(enroll, required=True)
    enroll.add_argument("--face_crop", type=float, default=None,
                        help="central fraction of each image kept (default: the checkpoint's, else 1.0)")
    add_align_options(enroll, remembered="the gallery remembers it, so identify and add align the same way")
    enroll.add_argument("--match", choices=["mean", "nearest"], default="nearest",
                        help="compare a probe with each person's mean embedding or most similar image (default nearest)")
    enroll.add_argument("--images_per_person", type=int, default=None, help="enroll the first N images (natural order)")
    enroll.add_argument("--flip", action="store_true", help="average each embedding with the mirrored image's")
    thresholds = enroll.add_mutually_exclusive_group()
    thresholds.add_argument("--target_far", type=float, default=None,
                            help="choose the threshold accepting at most this fraction of impostor scores "
                            "(default: the best separation)")
    thresholds.add_argument("--threshold", type=float, default=None, help="a fixed cosine-similarity threshold")
    enroll.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _run_options(enroll)

    identify = sub.add_parser("identify", help="name the faces in images (or say unknown)")
    identify.add_argument("--gallery", required=True, help="a gallery file")
    identify.add_argument("images", nargs="+", metavar="IMAGES_OR_DIR", help="image files or folders (searched recursively)")
    identify.add_argument("--csv", default=None, help="also write path,identity,score,nearest rows to this file")
    _model_options(identify, required=False)
    _run_options(identify)

    add = sub.add_parser("add", help="enroll more people or more images of enrolled people")
    add.add_argument("--gallery", required=True, help="the gallery file to extend (rewritten)")
    add.add_argument("--root", required=True, help="<root>/<person>/<image>")
    add.add_argument("--images_per_person", type=int, default=None, help="the first N images of each folder")
    _model_options(add, required=False)
    _run_options(add)

    remove = sub.add_parser("remove", help="forget people")
    remove.add_argument("--gallery", required=True, help="the gallery file (rewritten)")
    remove.add_argument("names", nargs="+", metavar="NAME", help="enrolled people to remove")
    _model_options(remove, required=False)
    _run_options(remove)

    show = sub.add_parser("show", help="people, images, threshold and model of a gallery")
    show.add_argument("file", help="a gallery file")
    return parser


def gallery_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer gallery``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse_args(list(argv))
    if getattr(args, "batch_size", 1) < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {args.batch_size}")
    if getattr(args, "images_per_person", None) is not None and args.images_per_person < 1:
        raise ConfigError(f"--images_per_person must be >= 1, got {args.images_per_person}")
    action = {"enroll": _enroll, "identify": _identify, "add": _add, "remove": _remove, "show": _show}[args.action]
    return action(args)


__all__ = ["UNKNOWN", "build_model", "build_parser", "gallery_command", "model_source"]
