"""``facetransfer export``: a trained checkpoint as ONNX or TorchScript, with a JSON sidecar.

    facetransfer export --ckpt_path runs/.../best.ckpt --out face.onnx
    facetransfer export --ckpt_path runs/.../best.ckpt --out face_embeddings.pt --format torchscript --embeddings
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from ..export import CHECK_IMAGES, ExportFormat, export_checkpoint, resolve_format
from ..io.images import list_image_files
from .options import ToolParser


def build_parser() -> ToolParser:
    parser = ToolParser("export", "Export a trained checkpoint to ONNX or TorchScript, with a JSON sidecar (classes, "
                        "input size, face crop, mean/std, parity check).", epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--ckpt_path", type=str, required=True, help="a FaceClassifier checkpoint")
    parser.add_argument("--out", type=str, required=True,
                        help="the file to write (.onnx, .pt); the sidecar is <out>.json")
    parser.add_argument("--format", type=Optional[ExportFormat], default=None, help="default: from the --out suffix")
    parser.add_argument("--embeddings", action="store_true", help="output L2-normalised embeddings, not logits")
    parser.add_face_crop("the checkpoint's training face crop; recorded in the sidecar")
    parser.add_argument("--check_images", type=str, nargs="+", default=None, metavar="IMAGE_OR_DIR",
                        help=f"images for the parity check (the first {CHECK_IMAGES}; default: the checkpoint's test "
                        "split, else generated faces)")
    return parser


def export_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer export``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse(argv)
    resolve_format(args.out, args.format)  # a bad name fails before the model loads
    images = list_image_files(args.check_images)[:CHECK_IMAGES] if args.check_images else None
    result = export_checkpoint(
        args.ckpt_path, args.out, format=args.format, embeddings=args.embeddings, face_crop=args.face_crop,
        check_images=images,
    )
    meta, parity = result.metadata, result.metadata["parity"]
    print(
        f"wrote {result.path} ({meta['file_format']}, {meta['output_name']} of {meta['backbone']}, "
        f"input {meta['input_size']} px, {len(meta['classes'])} classes) and {result.sidecar}"
    )
    print(
        f"parity: max |{parity['runtime']} - {parity['reference']}| = {parity['max_abs_diff']:.2g} "
        f"(<= {parity['tolerance']:g}) on {parity['images']} images from {parity['images_from']}, batch sizes "
        f"{parity['batch_sizes'][0]} and 1"
    )
    return 0


__all__ = ["build_parser", "export_command"]
