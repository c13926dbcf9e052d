"""``facetransfer data download lfw``: fetch a dataset, resumable and verified.

    facetransfer data download lfw --variant deepfunneled --root data/lfw
    facetransfer data download lfw --variant original --root data/lfw    # a second variant, same protocol files
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..data.lfw import ARCHIVES
from ..data.lfw_download import BASE_URL, download_lfw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facetransfer data",
        description="Get datasets.",
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    download = sub.add_parser(
        "download",
        help="download a dataset (resumable, checked, installed atomically)",
        description="Download LFW's images of one variant and its protocol files from the LFW site. An "
        "interrupted download continues when run again; protocol files are checked against their published "
        "MD5, the images against the per-person counts of lfw-names.txt, and the image folder appears only "
        "once it is complete.",
    )
    download.add_argument("dataset", choices=["lfw"], help="the dataset")
    download.add_argument("--variant", default="deepfunneled", choices=list(ARCHIVES),
                          help="LFW alignment: original (lfw.zip), funneled, deepfunneled (default)")
    download.add_argument("--root", required=True, help="folder to install into (created)")
    download.add_argument("--base-url", default=BASE_URL, help=f"where the files are served (default {BASE_URL})")
    download.add_argument("--keep-archive", action="store_true", help="keep the downloaded zip after installing")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def data_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer data``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse_args(list(argv))
    images = download_lfw(args.root, args.variant, base_url=args.base_url, progress=not args.no_progress,
                          keep_archive=args.keep_archive)
    count = sum(1 for _ in images.glob("*/*.jpg"))
    print(f"LFW {args.variant}: {count} images of {sum(1 for p in images.iterdir() if p.is_dir())} people in "
          f"{images}; protocol files in {images.parent}")
    return 0


__all__ = ["build_parser", "data_command"]
