"""``facetransfer verify``: LFW pair verification from the command line.

    facetransfer verify --pairs ../shared/data/lfw-devtrain/pairsDevTrain.txt \\
        --backbone dlib_resnet --weights FACE_API --face_crop 0.6 --out runs/verify
    facetransfer verify --pairs lfw/pairs.txt --ckpt_path runs/.../best.ckpt --flip
    facetransfer verify --pairs ../shared/data/lfw-devtrain/pairsDevTrain.txt --align mtcnn \\
        --backbone dlib_resnet --weights FACE_API --tta jitter:10 --distance euclidean
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Optional

from jsonargparse.typing import OpenUnitInterval, PositiveInt

from ..data.lfw import LFWSource
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

DEFAULT_OUT = "runs/verify"


def build_parser() -> ToolParser:
    parser = ToolParser("verify", "LFW pair verification: 10-fold accuracy, ROC AUC, TAR@FAR and an ROC plot from a "
                        "backbone's L2-normalised features.", epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--pairs", type=str, required=True,
                        help="pairsDevTrain.txt / pairsDevTest.txt (View 1) or pairs.txt (View 2)")
    parser.add_argument("--root", type=Optional[str], default=None,
                        help="LFW folder holding the images (default: the pairs file's folder)")
    parser.add_groups(ModelOptions, AlignOptions)
    parser.add_face_crop(f"a checkpoint's training face crop, else {LFWSource.face_crop}; 1.0 with --align; "
                         "without alignment dlib_resnet does best at 0.45, see docs/verification.md")
    parser.add_tta()
    parser.add_argument("--score_norm", type=Literal["none", "center", "asnorm"], default="none",
                        help="normalise each fold's scores with the other folds' images only: center (embeddings "
                        "minus their mean) or asnorm (adaptive score normalisation against them)")
    parser.add_argument("--distance", type=Literal["cosine", "euclidean"], default="cosine",
                        help="cosine similarity of the normalised embeddings, or the Euclidean distance between the "
                        "raw ones (views of --tta averaged as they are), which dlib_resnet was trained for")
    parser.add_argument("--far", type=OpenUnitInterval, default=1e-3, help="false accept rate of the TAR@FAR metric")
    parser.add_argument("--folds", type=PositiveInt, default=10,
                        help="folds for View 1 files (View 2 has 10 official ones)")
    parser.add_argument("--out", type=str, default=DEFAULT_OUT,
                        help="folder for roc.png, metrics.json, scores.tsv and TensorBoard events")
    parser.add_groups(LoadingOptions)
    parser.add_progress()
    return parser


def verify_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer verify``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse(argv)
    from ..data.pairs import PairsProtocol
    from ..verification.evaluate import evaluate_pairs  # after parsing: --help stays light

    source = ModelOptions.of(args).source(required=True)
    loading, tta = LoadingOptions.of(args), tta_of(args)
    protocol = PairsProtocol.load(args.pairs, args.root)  # bad pairs / missing images fail before the model loads
    model = build_model(source).to(loading.torch_device)
    result = evaluate_pairs(
        model, protocol, n_folds=args.folds, out_dir=args.out,
        face_crop=args.face_crop or default_face_crop(model, args.align, LFWSource), tta=tta, far=args.far,
        batch_size=loading.batch_size, num_workers=loading.workers, device=loading.torch_device,
        progress=show_progress(args), align=args.align, align_template=args.align_template,
        score_norm=args.score_norm, distance=args.distance,
    )
    m = result.metrics
    print(result.summary())
    folds = "official View 2 folds" if m.official_folds else f"{m.num_folds} stratified folds in file order"
    threshold = (f"distance threshold on all pairs {-m.threshold:.4f}" if args.distance == "euclidean" and
                 args.score_norm == "none" else f"threshold on all pairs {m.threshold:.4f}")
    print(f"  accuracy {m.accuracy:.4f} ± {m.accuracy_std:.4f} ({folds}); {threshold}")
    print(f"  ROC AUC {m.auc:.4f}; TAR@FAR={m.far:g} {m.tar:.4f}")
    if m.tar_note:
        print(f"  note: {m.tar_note}")
    print(f"  wrote {result.files['roc_png']}, {result.files['metrics_json']}, {result.files['scores_tsv']} "
          f"and TensorBoard events in {args.out}")
    return 0


__all__ = ["build_parser", "verify_command"]
