"""What each CPU speed-up buys: memory format, BatchNorm folding, glibc malloc thresholds.

For every backbone it measures, on random input and the same number of threads:

* **inference** (``torch.inference_mode``, eval): contiguous, channels-last, and channels-last
  with BatchNorm folded (``facetransfer.models.inference_forward``, what feature extraction runs);
* **training steps** on a ready batch (forward, cross-entropy, backward, Adam): contiguous vs
  channels-last (``FaceClassifier(channels_last=None)`` picks channels-last on CPU).

The malloc thresholds are process-wide, so the whole measurement runs twice, in two child
processes: with ``ft.tune_malloc()`` and with ``FACETRANSFER_TUNE_MALLOC=0``. Variants take turns
over ``--repeats`` rounds and the median is reported (small VMs are noisy). It prints a Markdown
table with img/s and the speed-up of each step, and writes ``cpu_speed.json`` / ``cpu_speed.md``::

    python benchmarks/cpu_speed.py --backbones mobilenet_v2,resnet18 --size 224 --batch-size 64

Numbers from a 2-core Xeon are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F


def _rates(variants: dict[str, Callable[[], None]], batch: int, steps: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median img/s of each variant; the variants take turns, so a noisy machine hits them alike."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append(steps * batch / (time.perf_counter() - start))
    return {name: statistics.median(rates) for name, rates in times.items()}


def _net(backbone: str, size: int):
    import facetransfer as ft

    return ft.get_backbone(backbone, **({"input_size": size} if backbone == "scratch_cnn" else {}))


def measure(backbone: str, size: int, batch: int, train_batch: int, steps: int, warmup: int, repeats: int) -> dict:
    """img/s of each variant for one backbone, in this process (its malloc setting as it is)."""
    from facetransfer.models import inference_forward

    torch.manual_seed(0)
    net = _net(backbone, size).eval()
    x = torch.randn(batch, 3, size, size)
    row = {"backbone": backbone, "size": size, "batch": batch}
    with torch.inference_mode(), inference_forward(net, channels_last=True, fuse=False) as channels_last, \
            inference_forward(net, channels_last=True, fuse=True) as folded:
        # the unfused channels-last pass converted ``net`` itself: a contiguous copy for the baseline
        contiguous = _net(backbone, size).eval()
        contiguous.load_state_dict(net.state_dict())
        row.update(_rates({
            "infer_contiguous": lambda: contiguous.forward_features(x),
            "infer_channels_last": lambda: channels_last(x),
            "infer_folded": lambda: folded(x),
        }, batch, steps, warmup, repeats))

    def trainer(layout: str) -> Callable[[], None]:
        model = _net(backbone, size)
        model.reset_head(100)
        xt = torch.randn(train_batch, 3, size, size)
        if layout == "channels_last":
            model, xt = model.to(memory_format=torch.channels_last), xt.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 100, (train_batch,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xt), y).backward()
            opt.step()

        return step

    row.update(_rates({f"train_{layout}": trainer(layout) for layout in ("contiguous", "channels_last")},
                      train_batch, max(1, steps // 2), warmup, repeats))
    return row


def _child(args) -> None:
    import facetransfer as ft
    from facetransfer.training.noise import silence_known_noise

    silence_known_noise()
    tuned = ft.tune_malloc()
    torch.set_num_threads(args.threads)
    rows = [
        {**measure(b, args.size, args.batch_size, args.train_batch_size, args.steps, args.warmup, args.repeats),
         "malloc_tuned": tuned}
        for b in args.backbones.split(",")
    ]
    print(json.dumps(rows))


def table(rows: list[dict]) -> str:
    """Markdown: one line per backbone and malloc setting, img/s and speed-ups."""
    lines = [
        "| backbone | malloc tuned | infer contiguous | channels-last | + BN folded | speed-up | "
        "train contiguous | train channels-last | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} ({r['size']} px, batch {r['batch']}) | {'yes' if r['malloc_tuned'] else 'no'} | "
            f"{r['infer_contiguous']:.1f} | {r['infer_channels_last']:.1f} | {r['infer_folded']:.1f} | "
            f"{r['infer_folded'] / r['infer_contiguous']:.2f}x | {r['train_contiguous']:.1f} | "
            f"{r['train_channels_last']:.1f} | {r['train_channels_last'] / r['train_contiguous']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="mobilenet_v2,resnet18,scratch_cnn")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--batch-size", type=int, default=64, help="inference batch")
    parser.add_argument("--train-batch-size", type=int, default=32, help="training batch (the paper's 32)")
    parser.add_argument("--steps", type=int, default=3, help="batches per timed round (training: half)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="results/cpu_speed")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return []

    rows: list[dict] = []
    forwarded = list(sys.argv[1:] if argv is None else argv)
    for tune in ("1", "0"):
        env = {**os.environ, "FACETRANSFER_TUNE_MALLOC": tune, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run([sys.executable, __file__, *forwarded, "--child"], env=env, capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"cpu_speed: the measuring process failed:\n{out.stderr[-3000:]}")
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    markdown = table(rows)
    header = f"CPU: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}"
    print(header + "\n\n" + markdown)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cpu_speed.json").write_text(json.dumps(rows, indent=1))
    (out_dir / "cpu_speed.md").write_text(header + "\n\n" + markdown + "\n")
    return rows


if __name__ == "__main__":
    main()
