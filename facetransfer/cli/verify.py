"""``facetransfer verify``: LFW pair verification from the command line.

    facetransfer verify --pairs ../shared/data/lfw-devtrain/pairsDevTrain.txt \\
        --backbone dlib_resnet --weights FACE_API --face_crop 0.6 --out runs/verify
    facetransfer verify --pairs lfw/pairs.txt --ckpt_path runs/.../best.ckpt --flip
    facetransfer verify --pairs ../shared/data/lfw-devtrain/pairsDevTrain.txt --align mtcnn \\
        --backbone dlib_resnet --weights FACE_API
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Sequence
from pathlib import Path

from ..data.datamodule import DEFAULT_FACE_CROP, default_num_workers
from ..errors import ConfigError, WeightsError
from ..verification.embedder import add_align_options
from .options import add_progress_option, show_progress

DEFAULT_OUT = "runs/verify"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facetransfer verify",
        description="LFW pair verification: 10-fold accuracy, ROC AUC, TAR@FAR and an ROC plot "
        "from a backbone's L2-normalised features.",
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pairs", required=True, help="pairsDevTrain.txt / pairsDevTest.txt (View 1) or pairs.txt (View 2)"
    )
    parser.add_argument("--root", default=None, help="LFW folder holding the images (default: the pairs file's folder)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--backbone", help="a registered backbone (facetransfer backbones)")
    model.add_argument("--ckpt_path", help="a FaceClassifier checkpoint (its backbone's features are used)")
    parser.add_argument("--weights", default=None, help="pretrained weights of --backbone: FACE_API, IMAGENET1K_V1 ...")
    parser.add_argument("--weights_path", default=None, help="a local state dict for --backbone")
    parser.add_argument("--input_size", type=int, default=None, help="input side in pixels (default: the backbone's)")
    parser.add_argument(
        "--face_crop", type=float, default=None,
        help=f"central fraction of the image kept before resizing (default {DEFAULT_FACE_CROP['lfw']}, 1.0 with "
        "--align; without alignment dlib_resnet does best at 0.45, see docs/verification.md)",
    )
    add_align_options(parser)
    parser.add_argument("--flip", action="store_true", help="average each embedding with the mirrored image's")
    parser.add_argument("--far", type=float, default=1e-3, help="false accept rate of the TAR@FAR metric")
    parser.add_argument("--folds", type=int, default=10, help="folds for View 1 files (View 2 has 10 official ones)")
    parser.add_argument(
        "--out", default=DEFAULT_OUT,
        help=f"folder for roc.png, metrics.json, scores.tsv and TensorBoard events (default {DEFAULT_OUT})",
    )
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=None, help="image-loading workers (default: CPUs - 1)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_progress_option(parser)
    return parser


def load_model(args: argparse.Namespace):
    """The FaceClassifier of ``--ckpt_path`` or ``--backbone`` (+ weights)."""
    from ..training.module import FaceClassifier

    if args.ckpt_path:
        if args.weights or args.weights_path:
            raise ConfigError("--weights/--weights_path apply to --backbone; a checkpoint holds its own weights")
        path = Path(args.ckpt_path)
        if not path.is_file():
            raise WeightsError(f"checkpoint {path} does not exist")
        try:
            model = FaceClassifier.load_from_checkpoint(path, map_location="cpu")
        except (KeyError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
            raise WeightsError(f"cannot load checkpoint {path}: {str(err).splitlines()[0]}") from None
        if args.input_size is not None:
            model.backbone.preprocess = model.backbone.preprocess.resized(args.input_size)
        return model
    return FaceClassifier(
        args.backbone, weights=args.weights, weights_path=args.weights_path, input_size=args.input_size
    )


def verify_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer verify``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    import torch

    from ..verification.evaluate import evaluate_pairs
    from ..verification.pairs import PairsProtocol

    args = build_parser().parse_args(list(argv))
    default_crop = 1.0 if args.align != "none" else DEFAULT_FACE_CROP["lfw"]
    face_crop = default_crop if args.face_crop is None else args.face_crop
    if not 0 < face_crop <= 1:
        raise ConfigError(f"--face_crop must be in (0, 1], got {face_crop}")
    if not 0 < args.far < 1:
        raise ConfigError(f"--far must be in (0, 1), got {args.far}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {args.batch_size}")
    protocol = PairsProtocol.load(args.pairs, args.root)  # bad pairs / missing images fail before the model loads
    model = load_model(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = evaluate_pairs(
        model.to(device),
        protocol,
        face_crop=face_crop,
        flip=args.flip,
        far=args.far,
        n_folds=args.folds,
        batch_size=args.batch_size,
        num_workers=default_num_workers() if args.num_workers is None else args.num_workers,
        device=device,
        out_dir=args.out,
        progress=show_progress(args),
        align=args.align,
        align_template=args.align_template,
    )
    m = result.metrics
    print(result.summary())
    folds = "official View 2 folds" if m.official_folds else f"{m.num_folds} stratified folds in file order"
    print(f"  accuracy {m.accuracy:.4f} ± {m.accuracy_std:.4f} ({folds}); threshold on all pairs {m.threshold:.4f}")
    print(f"  ROC AUC {m.auc:.4f}; TAR@FAR={m.far:g} {m.tar:.4f}")
    if m.tar_note:
        print(f"  note: {m.tar_note}")
    print(f"  wrote {result.files['roc_png']}, {result.files['metrics_json']}, {result.files['scores_tsv']} "
          f"and TensorBoard events in {args.out}")
    return 0


__all__ = ["build_parser", "verify_command"]
