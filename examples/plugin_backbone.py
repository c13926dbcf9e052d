"""A minimal plug-in backbone: define it, register it, train it.

Three ways to make ``tiny_convnet`` available to facetransfer:

1. Python: importing this module runs ``@register_backbone`` (as below).
2. A package entry point, so ``facetransfer fit --model.backbone tiny_convnet`` finds it
   without any import — in the plug-in package's ``pyproject.toml``::

       [project.entry-points."facetransfer.backbones"]
       tiny_convnet = "plugin_backbone:tiny_convnet"

3. LightningCLI ``class_path`` (no registration at all)::

       model:
         backbone:
           class_path: plugin_backbone.TinyConvNet
           init_args: {width: 16}

Run ``python examples/plugin_backbone.py`` to train it for a few epochs on synthetic faces.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict

import lightning as L
from torch import nn

import facetransfer as ft


class TinyConvNet(ft.Backbone):
    """Two conv stages -> global average pooling -> ``2 * width`` features."""

    def __init__(self, width: int = 16) -> None:
        stages = OrderedDict(
            stem=nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
            body=nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU()),
        )
        super().__init__(stages, num_features=2 * width, preprocess=ft.Preprocess(crop_size=64, resize_size=72))


@ft.register_backbone("tiny_convnet")
def tiny_convnet(weights: str | None = None, weights_path: str | None = None, width: int = 16) -> ft.Backbone:
    """Builder: the registry passes ``weights`` / ``weights_path`` to every backbone."""
    if weights is not None:
        raise ft.ConfigError("tiny_convnet has no pretrained weights")
    net = TinyConvNet(width)
    if weights_path:
        from facetransfer.models.weights import load_into, load_state_dict_file

        load_into(net, load_state_dict_file(weights_path), what=f"weights file {weights_path}", ignore_prefixes=("head.",))
    return net


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Train the plug-in backbone on synthetic faces.")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--out", default="runs/example_plugin")
    args = parser.parse_args(argv)

    ft.tune_malloc()  # faster CPU runs: freed activation memory is reused (Linux/glibc)
    L.seed_everything(0)
    assert "tiny_convnet" in ft.list_backbones()
    data = ft.FaceDataModule(
        "synthetic",
        dataset_args={"num_identities": args.identities, "image_size": 64},
        num_workers=0,
        preprocess=ft.backbone_preprocess("tiny_convnet", backbone_args={"width": 8}),
    )
    model = ft.FaceClassifier(
        "tiny_convnet", backbone_args={"width": 8}, freeze="none", lr=3e-3, class_names=data.class_names
    )
    trainer = ft.make_trainer(max_epochs=args.epochs, default_root_dir=args.out, enable_progress_bar=False)
    trainer.fit(model, data)
    (metrics,) = trainer.test(model, data, verbose=False)
    print(f"tiny_convnet from scratch: test top-1 {metrics['test/acc']:.4f} over {data.num_classes} identities")
    return metrics


if __name__ == "__main__":
    main()
