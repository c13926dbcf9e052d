"""Does ImageNet pretraining help a linear probe on faces? The same probe on ImageNet vs random weights.

Runs ``examples/linear_probe.py`` (frozen backbone, features computed once, standardised, linear
head: Adam lr 1e-3, batch 32, 20 epochs) twice on the same split and prints both test accuracies::

    python benchmarks/imagenet_vs_random_probe.py --root ../shared/data/lfw-devtrain --min-images 10
"""

from __future__ import annotations

import argparse
import runpy
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "linear_probe.py"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="lfw")
    parser.add_argument("--root", required=True)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--weights", default="IMAGENET1K_V1")
    parser.add_argument("--min-images", default="10")
    parser.add_argument("--epochs", default="20")
    parser.add_argument("--input-size", default=None)
    parser.add_argument("--out", default="runs/imagenet_vs_random")
    args = parser.parse_args(argv)

    probe = runpy.run_path(str(EXAMPLE))["main"]
    results = {}
    for weights in (args.weights, "none"):
        start = time.perf_counter()
        cli = ["--dataset", args.dataset, "--root", args.root, "--backbone", args.backbone, "--weights", weights,
               "--min-images", args.min_images, "--epochs", args.epochs, "--out", f"{args.out}/{weights}"]
        if args.input_size:
            cli += ["--input-size", args.input_size]
        metrics = probe(cli)
        results[weights] = {**metrics, "seconds": time.perf_counter() - start}
    pre, rnd = results[args.weights], results["none"]
    print(f"\n| {args.backbone} linear probe | test top-1 | top-5 | macro-F1 | wall s |\n|---|---|---|---|---|")
    for name, r in ((args.weights, pre), ("random init", rnd)):
        print(f"| {name} | {r['test/acc']:.4f} | {r['test/acc_top5']:.4f} | {r['test/f1_macro']:.4f} | {r['seconds']:.0f} |")
    print(f"\nImageNet / random top-1: {pre['test/acc'] / max(rnd['test/acc'], 1e-9):.1f}x "
          f"(+{pre['test/acc'] - rnd['test/acc']:.4f})")
    return results


if __name__ == "__main__":
    main()
