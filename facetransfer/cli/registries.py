"""Small tool commands of ``facetransfer``: offline weights, the backbone and strategy registries.

    facetransfer weights import mobilenet_v2-b0353104.pth
    facetransfer backbones
    facetransfer strategies

None of them imports PyTorch Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence

from .options import ToolParser


def weights_command(argv: Sequence[str]) -> int:
    parser = ToolParser("weights", "Manage offline pretrained weights.")
    imp = parser.subcommand("import", "verify a weights file's hash and place it in the torch hub cache")
    imp.add_argument("files", type=str, nargs="+", help="a torchvision .pth file (or a face-api npm tarball)")
    imp.add_argument("--force", action="store_true", help="overwrite an existing cached file")
    parser.subcommand("where", "print the cache folder")
    parser.subcommand("list", "list the weights files found in the cache")
    args = parser.parse(argv)
    from ..models import weights as w

    if args.action == "where":
        print(w.hub_checkpoint_dir())
    elif args.action == "list":
        folder = w.hub_checkpoint_dir()
        for path in sorted(p for p in folder.glob("*") if not p.name.startswith(".")) if folder.is_dir() else []:
            entry = w.find_known_file(path.name)
            print(f"{path.name}\t{entry.source if entry else 'unknown'}")
    else:
        for file in args["import"].files:
            dest = w.import_any(file, force=args["import"].force)
            print(f"imported {file} -> {dest}")
    return 0


def backbones_command(argv: Sequence[str]) -> int:
    ToolParser("backbones", "List registered backbones.").parse(argv)
    from ..models.registry import BACKBONES
    from ..training.freeze import list_freeze_policies

    for name in BACKBONES.names():
        print(f"{name:18s} {BACKBONES.summary(name)}")
    print("\nfreeze policies: " + ", ".join(list_freeze_policies()) + " (first:K, until:STAGE, stages:A,B)")
    return 0


def strategies_command(argv: Sequence[str]) -> int:
    ToolParser("strategies", "List the registered strategies (built-ins and plug-ins).").parse(argv)
    from ..strategies.base import STRATEGIES, get_strategy

    for name in STRATEGIES.names():
        strategy = get_strategy(name)
        frozen = strategy.freeze or f"model.freeze (default {strategy.default_freeze})"
        sections = ", ".join(f"{s.key}:" for s in strategy.sections)
        print(f"{name:16s} {STRATEGIES.summary(name)}")
        print(f"{'':16s} trains: {strategy.trains}; freezes: {frozen}; a method may set: {sections}")
    return 0


__all__ = ["backbones_command", "strategies_command", "weights_command"]
