"""Training throughput: facetransfer's fit loop on real JPEGs vs. the synthetic ceiling.

For each backbone, in ONE run and on one device:

* **ceiling** - a plain PyTorch loop on a random batch already on the device, with the same
  model, optimizer (fused Adam on CUDA), precision and memory format: what the GPU can do;
* **ours** - ``Trainer.fit`` through facetransfer (``FaceDataModule(cache=...)`` +
  ``FaceClassifier`` + ``make_trainer``) on the real images, steady-state epochs only;
* **pil** - the same fit with the PIL DataLoader path (``cache="none"``, N workers);
* optionally **compiled** - the ceiling and ours again with ``torch.compile``;
* **probe** - a linear probe's single feature pass over all images vs. the inference ceiling.

Prints img/s and ratios and writes them as JSON/Markdown. Works on CPU with tiny settings
(a smoke test; speed is not asserted)::

    python benchmarks/throughput.py --root ../shared/data/lfw-devtrain --backbones resnet50,resnet18 \\
        --batch-size 256 --compile resnet50 --out results/throughput
    python benchmarks/throughput.py --root tests/tiny_lfw --backbones resnet18 --batch-size 8 \\
        --input-size 64 --epochs 2 --steps 3 --cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

import facetransfer as ft
from facetransfer.models.fusion import channels_last_is_faster, inference_forward
from facetransfer.training.noise import silence_known_noise


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def _model(args, backbone: str, num_classes: int, compile: bool = False) -> ft.FaceClassifier:
    return ft.FaceClassifier(
        backbone, class_names=[f"id{i}" for i in range(num_classes)], input_size=args.input_size,
        lr=1e-4, compile=compile,
    )


def ceiling(args, backbone: str, device: torch.device, num_classes: int, compile: bool = False) -> float:
    """img/s of a raw training loop on a device-resident random batch."""
    model = _model(args, backbone, num_classes).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model.backbone
    forward = torch.compile(net) if compile else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    size = net.preprocess.crop_size
    x = torch.randn(args.batch_size, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (args.batch_size,), device=device)
    net.train()

    def step() -> None:
        with _autocast(device, args.precision):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def inference_ceiling(args, backbone: str, device: torch.device) -> float:
    """Forward passes on a random batch already on the device, with the same folded-BatchNorm
    copy and memory format that ``extract_features`` uses: only the data path differs from ours."""
    net = _model(args, backbone, 2).backbone.to(device).eval()
    size = net.preprocess.crop_size
    x = torch.randn(args.batch_size, 3, size, size, device=device)
    with torch.no_grad(), _autocast(device, args.precision), \
            inference_forward(net, channels_last=channels_last_is_faster(device)) as features:
        for _ in range(args.warmup):
            features(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            features(x)
        _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


class SteadyStateTimer(L.Callback):
    """Training images per second after the first ``skip`` (warm-up) epochs, two ways:
    ``rate`` over whole epochs (epoch boundaries included) and ``step_rate`` from each epoch's
    first batch to its end (what a dataset with long epochs approaches)."""

    def __init__(self, skip: int = 1) -> None:
        self.skip = skip
        self.images = 0
        self.seconds = 0.0
        self.step_seconds = 0.0
        self.step_images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        self._start = time.perf_counter()
        self._first = None
        self._images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._first is None:
            _sync(pl_module.device)
            self._first = time.perf_counter()
            self._first_images = len(batch[1])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        end = time.perf_counter()
        if trainer.current_epoch >= self.skip:
            self.seconds += end - self._start
            self.images += self._images
            self.step_seconds += end - self._first
            self.step_images += self._images

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")

    @property
    def step_rate(self) -> float:
        return self.step_images / self.step_seconds if self.step_seconds else float("nan")


def fit_rate(args, backbone: str, cache: str, accelerator: str, compile: bool = False, freeze: str = "none"):
    """img/s of facetransfer's own fit loop, and the DataModule (for its size)."""
    data = ft.FaceDataModule(
        "lfw", root=args.root, min_images_per_identity=args.min_images, val_fraction=0.05, test_fraction=0.05,
        batch_size=args.batch_size, num_workers=args.workers if cache == "none" else 0, cache=cache,
        preprocess=ft.backbone_preprocess(backbone, input_size=args.input_size),
    )
    model = ft.FaceClassifier(backbone, input_size=args.input_size, lr=1e-4, compile=compile, freeze=freeze,
                              class_names=data.class_names, features=data.features)
    timer = SteadyStateTimer(skip=1)
    trainer = ft.make_trainer(
        max_epochs=args.epochs, accelerator=accelerator, devices=1, precision=args.precision, callbacks=[timer],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=args.out,
    )
    trainer.fit(model, data)
    return timer, data


def probe_rate(args, backbone: str, accelerator: str) -> tuple[float, int]:
    """img/s of the linear probe's one feature pass over its training images (store path)."""
    data = ft.FaceDataModule(
        "lfw", root=args.root, min_images_per_identity=args.min_images, val_fraction=0.05, test_fraction=0.05,
        batch_size=args.batch_size, num_workers=0, cache=args.cache,
        preprocess=ft.backbone_preprocess(backbone, input_size=args.input_size),
    )
    model = ft.FaceClassifier(backbone, input_size=args.input_size, freeze="all", class_names=data.class_names,
                              features=data.features)
    trainer = ft.make_trainer(
        max_epochs=1, accelerator=accelerator, devices=1, precision=args.precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=args.out,
    )
    trainer.fit(model, data)
    # second pass: the store is built, time the feature pass alone
    provider = ft.InMemoryFeatures()
    provider.attach(model.frozen_features())
    provider.features("train", data.manifest.train, lambda: data.eval_batches("train"))
    count = len(data.manifest.train)
    return count / provider.seconds["train"], count


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="an LFW folder (e.g. ../shared/data/lfw-devtrain)")
    parser.add_argument("--backbones", default="resnet50,resnet18")
    parser.add_argument("--compile", default="", help="backbones to also measure with torch.compile")
    parser.add_argument("--probe", default="resnet50", help="backbone for the linear-probe feature pass ('' to skip)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--precision", default=None, help="default: bf16-mixed on CUDA, 32-true on CPU")
    parser.add_argument("--cache", default="gpu", help="the fast path: gpu (CUDA) or memory")
    parser.add_argument("--epochs", type=int, default=5, help="fit epochs (the first is warm-up)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the ceiling loops")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workers", type=int, default=15, help="DataLoader workers of the PIL path")
    parser.add_argument("--min-images", type=int, default=1, help="identities with at least this many images")
    parser.add_argument("--no-pil", action="store_true", help="skip the PIL-path measurement")
    parser.add_argument("--cpu", action="store_true", help="force the CPU (smoke test)")
    parser.add_argument("--out", default="results/throughput")
    args = parser.parse_args(argv)

    silence_known_noise()
    ft.tune_malloc()  # as the facetransfer command does: CPU runs reuse freed activation memory
    use_cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if use_cuda else "cpu")
    accelerator = "gpu" if use_cuda else "cpu"
    args.precision = args.precision or ("bf16-mixed" if use_cuda else "32-true")
    if not use_cuda and args.cache == "gpu":
        args.cache = "memory"
    if use_cuda:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if use_cuda else f"CPU ({platform.processor() or platform.machine()})"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    L.seed_everything(0)
    rows: list[dict] = []
    out = Path(args.out)

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "throughput.json").write_text(json.dumps(rows, indent=1))  # partial results survive a timeout

    backbones = [b for b in args.backbones.split(",") if b]
    plan = [(b, False) for b in backbones] + [(b, True) for b in backbones if b in args.compile.split(",")]
    plan.insert(len(backbones), ("probe", False))  # the cheap, important rows first; compilation last
    eager: dict[str, float] = {}
    for backbone, compile in plan:
        if backbone == "probe":
            if args.probe:
                rate, count = probe_rate(args, args.probe, accelerator)
                top = inference_ceiling(args, args.probe, device)
                record({"device": name, "model": f"{args.probe} linear-probe feature pass", "batch": args.batch_size,
                        "precision": args.precision, "ceiling": top, "ours": rate, "ratio": rate / top,
                        "images": count, "cache": args.cache})
            continue
        timer, data = fit_rate(args, backbone, args.cache, accelerator, compile=compile)
        top = ceiling(args, backbone, device, data.num_classes, compile=compile)
        row = {"device": name, "model": backbone + (" (compiled)" if compile else ""), "batch": args.batch_size,
               "precision": args.precision, "ceiling": top, "ours": timer.rate, "ratio": timer.rate / top,
               "ours_in_epoch": timer.step_rate, "ratio_in_epoch": timer.step_rate / top, "cache": args.cache,
               "train_images": len(data.manifest.train)}
        if compile:
            row["vs_eager_ceiling"] = timer.rate / eager[backbone] if backbone in eager else None
        else:
            eager[backbone] = top
            if not args.no_pil:
                pil, _ = fit_rate(args, backbone, "none", accelerator)
                row.update(pil=pil.rate, pil_ratio=pil.rate / top)
        record(row)
    (Path(args.out) / "throughput.json").write_text(json.dumps(rows, indent=1))
    lines = ["| device | model | batch | precision | ceiling img/s | ours img/s | ours/ceiling | ours in-epoch | "
             "PIL img/s | PIL/ceiling |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pil = f"{r['pil']:.0f} | {r['pil_ratio']:.2f}" if "pil" in r else "- | -"
        extra = f" ({r['vs_eager_ceiling']:.2f}x eager ceiling)" if r.get("vs_eager_ceiling") else ""
        in_epoch = f"{r['ratio_in_epoch']:.2f}" if "ratio_in_epoch" in r else "-"
        lines.append(f"| {r['device']} | {r['model']} | {r['batch']} | {r['precision']} | {r['ceiling']:.0f} | "
                     f"{r['ours']:.0f} | {r['ratio']:.2f}{extra} | {in_epoch} | {pil} |")
    table = "\n".join(lines)
    (Path(args.out) / "throughput.md").write_text(table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
