"""Alignment throughput: read + decode + MTCNN detection + 5-point warp of LFW JPEGs, in img/s.

Each setting aligns the same ``--images`` files end to end with ``Aligner.align_files`` (no
landmark cache: every image is detected), ``--repeats`` times; the best and median rates are
printed as a Markdown table and written as JSON, with the device, torch threads and load
average (the machine may be shared)::

    python benchmarks/align_speed.py --root ../shared/data/lfw-devtrain/lfw-deepfunneled --images 512
    python benchmarks/align_speed.py --root ../shared/data/lfw-devtrain/lfw --batch-sizes 1,8,32 --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from facetransfer.detection import Aligner
from facetransfer.io.images import is_image_name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="folder of <person>/<image> JPEGs (e.g. lfw-deepfunneled)")
    parser.add_argument("--images", type=int, default=512, help="how many files (sorted, evenly spread)")
    parser.add_argument("--batch-sizes", default="16", help="comma-separated detector batch sizes")
    parser.add_argument("--threads", default=str(torch.get_num_threads()), help="comma-separated torch thread counts")
    parser.add_argument("--template", default="dlib")
    parser.add_argument("--min-face-fraction", type=float, default=None, help="MTCNN setting (default 0.1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="folder for align_speed.json")
    return parser.parse_args(argv)


def _files(root: Path, count: int) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))
    if not files:
        raise SystemExit(f"no images under {root}")
    step = max(1, len(files) // count)
    return files[::step][:count]


def main(argv: list[str] | None = None) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        return _run(parse_args(argv))
    finally:
        torch.set_num_threads(threads)  # called in-process (tests): leave torch as it was


def _run(args: argparse.Namespace) -> list[dict]:
    files = _files(Path(args.root), args.images)
    detector_args = {} if args.min_face_fraction is None else {"min_face_fraction": args.min_face_fraction}
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            aligner = Aligner("mtcnn", args.template, cache=None, device=args.device, batch_size=batch,
                              detector_args=detector_args)
            list(aligner.align_files(files[: min(len(files), 2 * batch)]))  # warm-up
            rates, faceless = [], 0
            for _ in range(args.repeats):
                aligner = Aligner(aligner.detector, args.template, cache=None, device=args.device, batch_size=batch)
                start = time.perf_counter()
                results = list(aligner.align_files(files))
                rates.append(len(files) / (time.perf_counter() - start))
                faceless = sum(r.image is None for r in results)
            rows.append({
                "images": len(files), "image_size": list(results[0].location.image_size) if results[0].location else None,
                "batch_size": batch, "torch_threads": threads, "best_img_s": round(max(rates), 1),
                "median_img_s": round(statistics.median(rates), 1), "no_face": faceless,
                "device": f"{args.device}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                "load_average": round(os.getloadavg()[0], 2), "date": date.today().isoformat(),
                "detector": aligner.detector.cache_id(), "template": args.template,
            })
            print(f"threads {threads} batch {batch}: best {max(rates):.1f} img/s, median {statistics.median(rates):.1f}",
                  file=sys.stderr)
    print("| images | batch | torch threads | best img/s | median img/s | no face | load avg |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['images']} x {r['image_size']} | {r['batch_size']} | {r['torch_threads']} | {r['best_img_s']} | "
              f"{r['median_img_s']} | {r['no_face']} | {r['load_average']} |")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "align_speed.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
