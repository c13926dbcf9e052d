"""LFW pair verification on aligned faces: the images of a pairs file, aligned, then verified.

The same as ``facetransfer align`` into a folder followed by ``facetransfer verify --root
ALIGNED --face_crop 1.0``, but only the images the pairs name are aligned, and the centre
crop is measured next to it in the same run. Prints one table row per setting and writes
them as JSON::

    python benchmarks/verify_aligned.py --root ../shared/data/lfw-devtrain --variant deepfunneled \\
        --backbone dlib_resnet --weights FACE_API --template dlib --out results/verify_aligned
    python benchmarks/verify_aligned.py --root ../shared/data/lfw-devtrain --variant original --flip

An image without a face would make the pairs unusable, so the script stops with the list of
such images (``facetransfer align`` lists them in ``no_face.csv``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from facetransfer.data.lfw import LFWSource
from facetransfer.detection import Aligner
from facetransfer.errors import DataError
from facetransfer.models import get_backbone
from facetransfer.verification import PairsProtocol, evaluate_pairs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="LFW folder holding the variant folders and the pairs file")
    parser.add_argument("--pairs", default="pairsDevTrain.txt", help="pairs file name under --root, or a path")
    parser.add_argument("--variant", default="deepfunneled", choices=["deepfunneled", "funneled", "original"])
    parser.add_argument("--backbone", default="dlib_resnet")
    parser.add_argument("--weights", default="FACE_API")
    parser.add_argument("--template", default="dlib", help="alignment template (dlib, arcface)")
    parser.add_argument("--size", type=int, default=None, help="chip side (default: the template's)")
    parser.add_argument("--pick", default="largest_central", choices=["largest_central", "largest", "central"])
    parser.add_argument("--centre-crop", type=float, default=None,
                        help="also verify the raw images with this central face_crop (e.g. 0.45)")
    parser.add_argument("--flip", action="store_true", help="average each embedding with the mirrored image's")
    parser.add_argument("--cache", default="default", help="landmark cache file ('none': in memory)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=None, help="folder for results.json and the aligned chips")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        return _run(parse_args(argv))
    finally:
        torch.set_num_threads(threads)  # called in-process (tests): leave torch as it was


def _run(args: argparse.Namespace) -> list[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.root)
    pairs_file = Path(args.pairs) if Path(args.pairs).is_file() else root / args.pairs
    image_dir = LFWSource(str(root), variant=args.variant).image_dir()
    protocol = PairsProtocol.load(pairs_file, image_dir)
    keys = protocol.image_keys()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="verify_aligned_"))
    chips_dir = out / f"{args.variant}-{args.template}"
    model = get_backbone(args.backbone, weights=args.weights)
    rows = []
    common = {"variant": args.variant, "backbone": args.backbone, "weights": args.weights, "flip": args.flip,
              "pairs": pairs_file.name, "device": f"{platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} torch threads", "date": date.today().isoformat()}

    if args.centre_crop:
        result = evaluate_pairs(model, protocol, face_crop=args.centre_crop, flip=args.flip)
        rows.append({**common, "alignment": f"centre crop {args.centre_crop}", **_metrics(result)})

    aligner = Aligner("mtcnn", args.template, args.size, pick=args.pick,
                      cache=None if args.cache == "none" else args.cache, batch_size=args.batch_size)
    start = time.perf_counter()
    faceless, multi = [], 0
    for item in aligner.align_files([image_dir / k for k in keys]):
        key = Path(item.path).relative_to(image_dir).as_posix()
        if item.image is None:
            faceless.append(f"{key}: {item.error}")
            continue
        multi += item.location.faces > 1
        (chips_dir / key).parent.mkdir(parents=True, exist_ok=True)
        item.image.save(chips_dir / key, quality=95)
    seconds = time.perf_counter() - start
    if faceless:
        raise DataError(f"{len(faceless)} pair image(s) gave no chip:\n  " + "\n  ".join(faceless))
    aligned = PairsProtocol.load(pairs_file, chips_dir)
    result = evaluate_pairs(model, aligned, face_crop=1.0, flip=args.flip)
    rows.append({**common, "alignment": f"mtcnn + {aligner.template.name} {aligner.size} px, pick {args.pick}",
                 **_metrics(result), "images": len(keys), "several_faces": multi,
                 "align_seconds": round(seconds, 1)})
    print("| variant | alignment | flip | accuracy (10 folds) | AUC | TAR@FAR=1e-3 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['alignment']} | {'yes' if r['flip'] else 'no'} | "
              f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f} | {r['auc']:.4f} | {r['tar']:.4f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{args.variant}-{args.template}{'-flip' if args.flip else ''}.json").write_text(
        json.dumps(rows, indent=2) + "\n"
    )
    return rows


def _metrics(result) -> dict:
    m = result.metrics
    return {"accuracy": m.accuracy, "accuracy_std": m.accuracy_std, "auc": m.auc, "tar": m.tar}


if __name__ == "__main__":
    main(sys.argv[1:])
