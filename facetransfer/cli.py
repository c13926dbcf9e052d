"""The ``facetransfer`` command: LightningCLI's fit/validate/test/predict plus tool commands.

    facetransfer fit --config configs/linear_probe.yaml --data.dataset folder --data.root faces/
    facetransfer test --config configs/linear_probe.yaml --ckpt_path runs/.../last.ckpt
    facetransfer weights import mobilenet_v2-b0353104.pth
    facetransfer backbones

Bad input (unknown backbone, missing folder, corrupt image ...) ends with one
``facetransfer: error: ...`` line and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from lightning.pytorch.cli import LightningCLI

from ._noise import silence_known_noise
from .data import FaceDataModule
from .errors import FaceTransferError
from .module import FaceClassifier, restoring_from_checkpoint
from .trainer import default_callbacks, default_precision



def trainer_defaults() -> dict:
    """Defaults every run gets: best + last checkpoints by val/acc, learning-rate logging."""
    return {"default_root_dir": "runs", "callbacks": default_callbacks()}


class FaceTransferCLI(LightningCLI):
    """LightningCLI over :class:`FaceClassifier` and :class:`FaceDataModule`."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        super().__init__(
            FaceClassifier,
            FaceDataModule,
            trainer_defaults=trainer_defaults(),
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            parser_kwargs={"description": DESCRIPTION, "formatter_class": argparse.RawDescriptionHelpFormatter},
            args=list(args) if args is not None else None,
            run=run,
        )

    def before_instantiate_classes(self) -> None:
        trainer = self.config.get(str(self.subcommand), {}).get("trainer") if self.subcommand else None
        if trainer is not None and trainer.get("precision") is None:
            trainer["precision"] = default_precision(trainer.get("accelerator", "auto"))

    def instantiate_classes(self) -> None:
        ckpt = self.config.get(str(self.subcommand), {}).get("ckpt_path") if self.subcommand else None
        if ckpt and self.subcommand in ("test", "validate", "predict"):
            with restoring_from_checkpoint():  # the checkpoint holds the weights: no pretrained file needed
                super().instantiate_classes()
        else:
            super().instantiate_classes()

    def after_fit(self) -> None:
        ckpt = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and ckpt is not None and ckpt.best_model_path:
            print(f"facetransfer: best checkpoint {ckpt.best_model_path} (val/acc {float(ckpt.best_model_score):.4f})")
            print(f"facetransfer: test it with: facetransfer test --config <same config> --ckpt_path {ckpt.best_model_path}")


# --- tool commands ----------------------------------------------------------------------------
def _weights_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="facetransfer weights", description="Manage offline pretrained weights.")
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="verify a weights file's hash and place it in the torch hub cache")
    imp.add_argument("files", nargs="+", help="a torchvision .pth file (or a face-api npm tarball)")
    imp.add_argument("--force", action="store_true", help="overwrite an existing cached file")
    sub.add_parser("where", help="print the cache folder")
    sub.add_parser("list", help="list the weights files found in the cache")
    args = parser.parse_args(list(argv))
    from .models import weights as w

    if args.action == "where":
        print(w.hub_checkpoint_dir())
    elif args.action == "list":
        folder = w.hub_checkpoint_dir()
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            entry = w.find_known_file(path.name)
            print(f"{path.name}\t{entry.source if entry else 'unknown'}")
    else:
        for file in args.files:
            dest = w.import_any(file, force=args.force)
            print(f"imported {file} -> {dest}")
    return 0


def _backbones_command(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="facetransfer backbones", description="List registered backbones.").parse_args(argv)
    from .freeze import list_freeze_policies
    from .models import get_backbone_builder, list_backbones

    for name in list_backbones():
        doc = (get_backbone_builder(name).__doc__ or "").strip().split("\n")[0]
        print(f"{name:18s} {doc}")
    print("\nfreeze policies: " + ", ".join(list_freeze_policies()) + " (first:K, until:STAGE, stages:A,B)")
    return 0


def _verify_command(argv: Sequence[str]) -> int:
    from .verification.command import verify_command

    return verify_command(argv)


TOOL_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "weights": _weights_command,
    "backbones": _backbones_command,
    "verify": _verify_command,
}


def register_command(name: str) -> Callable:
    """Add a tool command (``facetransfer NAME ...``) taking its argv and returning an exit code."""

    def wrapper(fn: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
        TOOL_COMMANDS[name] = fn
        return fn

    return wrapper


DESCRIPTION = """Face recognition by transfer learning (PyTorch Lightning).

training commands (LightningCLI): fit, validate, test, predict
tool commands: weights (import/list offline weights), backbones (list models),
               verify (LFW pair verification)
Run 'facetransfer COMMAND --help' for each."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facetransfer`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("FACETRANSFER_LOGLEVEL", "WARNING"))
    silence_known_noise()
    try:
        if args and args[0] in TOOL_COMMANDS:
            return TOOL_COMMANDS[args[0]](args[1:])
        if argv is None:
            FaceTransferCLI()
        else:
            FaceTransferCLI(args=args)
    except FaceTransferError as err:
        print(f"facetransfer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facetransfer: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
