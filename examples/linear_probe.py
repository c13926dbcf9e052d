"""Train and evaluate a linear probe from Python (no CLI).

A frozen ImageNet-pretrained backbone, a fresh identity head trained on features
computed once; then the test split's top-1 / top-5 / macro-F1::

    python examples/linear_probe.py                                   # built-in synthetic faces
    python examples/linear_probe.py --dataset lfw --root ../shared/data/lfw-devtrain --min-images 10
    python examples/linear_probe.py --dataset folder --root ../shared/data/orl --weights none  # random init
"""

from __future__ import annotations

import argparse

import lightning as L

import facetransfer as ft


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic", choices=ft.list_sources())
    parser.add_argument("--root", default=None, help="dataset folder (not needed for synthetic)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--weights", default="IMAGENET1K_V1", help="pretrained weights name, or 'none'")
    parser.add_argument("--min-images", type=int, default=3, help="drop identities with fewer images")
    parser.add_argument("--train-samples", default="all", help="training-set size or 'all'")
    parser.add_argument("--input-size", type=int, default=None, help="input side in pixels (default: backbone's)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"],
                        help="lbfgs: full-batch L-BFGS on the cached features (converges); adam: mini-batches of 32")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of adam")
    parser.add_argument("--face-crop", type=float, default=None, help="central fraction kept (default: dataset's)")
    parser.add_argument("--raw-features", action="store_true", help="no feature standardisation before the head")
    parser.add_argument("--out", default="runs/example_linear_probe")
    args = parser.parse_args(argv)

    ft.tune_malloc()  # faster CPU runs: freed activation memory is reused (Linux/glibc)
    L.seed_everything(0)
    weights = None if args.weights.lower() == "none" else args.weights
    data = ft.FaceDataModule(
        args.dataset,
        root=args.root,
        min_images_per_identity=args.min_images,
        face_crop=args.face_crop,
        train_samples=args.train_samples if args.train_samples == "all" else int(args.train_samples),
        batch_size="all" if args.optimizer == "lbfgs" else 32,  # full batches of cached features for L-BFGS
        preprocess=ft.backbone_preprocess(args.backbone, weights, input_size=args.input_size),  # what the model expects
    )
    model = ft.FaceClassifier(
        args.backbone,
        weights=weights,
        freeze="all",  # linear probe: the backbone is frozen, only the head learns
        input_size=args.input_size,
        head_norm=not args.raw_features,
        optimizer=args.optimizer,
        head_c=1.0,  # the L2 penalty of scikit-learn's LogisticRegression(C=1)
        lr=args.lr,
        class_names=data.class_names,  # the identities, in label order
        features=data.features,  # the frozen backbone's features are computed once and served by the data
    )
    trainer = ft.make_trainer(max_epochs=args.epochs, default_root_dir=args.out, enable_progress_bar=False)
    trainer.fit(model, data)
    (metrics,) = trainer.test(model, data, ckpt_path="best", verbose=False)
    print(
        f"{args.backbone} ({args.weights}) linear probe on {args.dataset}: {data.num_classes} identities, "
        f"{len(data.manifest.train)} training images -> test top-1 {metrics['test/acc']:.4f}, "
        f"top-5 {metrics['test/acc_top5']:.4f}, macro-F1 {metrics['test/f1_macro']:.4f}"
    )
    return metrics


if __name__ == "__main__":
    main()
