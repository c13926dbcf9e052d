"""``facetransfer data download lfw``: fetch a dataset, resumable and verified.

    facetransfer data download lfw --variant deepfunneled --root data/lfw
    facetransfer data download lfw --variant original --root data/lfw    # a second variant, same protocol files
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..data.lfw import ARCHIVES
from ..data.lfw_download import BASE_URL, download_lfw
from .options import ToolParser, show_progress


def build_parser() -> ToolParser:
    parser = ToolParser("data", "Get datasets.", epilog=__doc__.split("\n", 2)[2])
    download = parser.subcommand(
        "download", "download a dataset (resumable, checked, installed atomically)",
        "Download LFW's images of one variant and its protocol files from the LFW site. An interrupted download "
        "continues when run again; protocol files are checked against their published MD5, the images against the "
        "per-person counts of lfw-names.txt, and the image folder appears only once it is complete.",
    )
    download.add_argument("dataset", type=Literal["lfw"], help="the dataset")
    download.add_argument("--variant", type=Literal[tuple(ARCHIVES)], default="deepfunneled",
                          help="LFW alignment: original (lfw.zip), funneled, deepfunneled")
    download.add_argument("--root", type=str, required=True, help="folder to install into (created)")
    download.add_argument("--base_url", type=str, default=BASE_URL, help="where the files are served")
    download.add_argument("--keep_archive", action="store_true", help="keep the downloaded zip after installing")
    download.add_progress()
    return parser


def data_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer data``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse(argv).download
    images = download_lfw(args.root, args.variant, base_url=args.base_url, progress=show_progress(args),
                          keep_archive=args.keep_archive)
    count = sum(1 for _ in images.glob("*/*.jpg"))
    print(f"LFW {args.variant}: {count} images of {sum(1 for p in images.iterdir() if p.is_dir())} people in "
          f"{images}; protocol files in {images.parent}")
    return 0


__all__ = ["build_parser", "data_command"]
