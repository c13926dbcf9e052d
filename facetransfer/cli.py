"""The ``facetransfer`` command: LightningCLI's fit/validate/test/predict plus tool commands.

    facetransfer fit --config configs/linear_probe.yaml --data.dataset folder --data.root faces/
    facetransfer test --config configs/linear_probe.yaml --ckpt_path runs/.../last.ckpt
    facetransfer weights import mobilenet_v2-b0353104.pth
    facetransfer backbones
    facetransfer sweep --config configs/experiments/demo.yaml
    facetransfer report results/demo

Bad input (unknown backbone, missing folder, corrupt image ...) ends with one
``facetransfer: error: ...`` line and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI

from ._noise import silence_known_noise
from .checkpointing import LOAD_ERRORS, checkpoint_error, find_last_checkpoint, is_load_error, use_atomic_checkpoints
from .data import FaceDataModule
from .errors import ConfigError, FaceTransferError
from .malloc_tuning import tune_malloc
from .module import FaceClassifier, restoring_from_checkpoint
from .trainer import default_benchmark, default_callbacks, default_precision



def trainer_defaults() -> dict:
    """Defaults every run gets: best + last checkpoints by val/acc, learning-rate logging."""
    return {"default_root_dir": "runs"}


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
        if trainer is not None and trainer.get("benchmark") is None and not trainer.get("deterministic"):
            trainer["benchmark"] = default_benchmark(trainer.get("accelerator", "auto"))

    def instantiate_classes(self) -> None:
        ckpt = self.config.get(str(self.subcommand), {}).get("ckpt_path") if self.subcommand else None
        if ckpt and self.subcommand in ("test", "validate", "predict"):
            with restoring_from_checkpoint():  # the checkpoint holds the weights: no pretrained file needed
                super().instantiate_classes()
        else:
            super().instantiate_classes()

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads the model's hyperparameters from ``--ckpt_path`` (``weights_only=True``): an
        unsafe or damaged file is one clear error, not a traceback."""
        try:
            super()._parse_ckpt_path()
        except LOAD_ERRORS as err:
            if not is_load_error(err):
                raise
            raise checkpoint_error(self.config[self.config.subcommand].get("ckpt_path"), err) from None

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)  # atomic, weights_only checkpoint files
        return trainer

    def _resolve_last_checkpoint(self) -> None:
        """``--ckpt_path last``: the newest last*.ckpt of earlier runs (Lightning looks only in the new run's folder)."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        found = find_last_checkpoint(self.trainer)
        if found is None and self.subcommand != "fit":
            raise ConfigError(f"--ckpt_path last: no last*.ckpt under {self.trainer.default_root_dir}")
        if self.trainer.is_global_zero:
            print(f"facetransfer: --ckpt_path last is {found}" if found else "facetransfer: no last checkpoint yet; starting a new run")
        config["ckpt_path"] = str(found) if found else None

    def before_fit(self) -> None:
        self._resolve_last_checkpoint()

    before_validate = before_test = before_predict = before_fit

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        """Add facetransfer's default callbacks, minus those the trainer options turn off."""
        defaults = default_callbacks(config.get("enable_checkpointing") is not False, config.get("logger") is not False)
        return super()._instantiate_trainer(config, [*callbacks, *defaults])

    def after_fit(self) -> None:
        # the val/acc checkpoint, also when a config adds others (e.g. every_n_train_steps, no monitor)
        monitored = [c for c in self.trainer.checkpoint_callbacks if getattr(c, "monitor", None) and c.best_model_path]
        ckpt = monitored[0] if monitored else self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and ckpt is not None and ckpt.best_model_path:
            score = ckpt.best_model_score
            shown = f" ({ckpt.monitor} {float(score):.4f})" if score is not None and ckpt.monitor else ""
            print(f"facetransfer: best checkpoint {ckpt.best_model_path}{shown}")
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
    "align": lambda argv: __import__("facetransfer.detection.command", fromlist=["_"]).align_command(argv),
    "data": lambda argv: __import__("facetransfer.data.command", fromlist=["_"]).data_command(argv),
}


def register_command(name: str) -> Callable:
    """Add a tool command (``facetransfer NAME ...``) taking its argv and returning an exit code."""

    def wrapper(fn: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
        TOOL_COMMANDS[name] = fn
        return fn

    return wrapper


def _register_sweep_commands() -> None:
    from .sweep.cli import report_command, sweep_command

    register_command("sweep")(sweep_command)
    register_command("report")(report_command)


_register_sweep_commands()

DESCRIPTION = """Face recognition by transfer learning (PyTorch Lightning).

training commands (LightningCLI): fit, validate, test, predict
tool commands: weights (import/list offline weights), backbones (list models),
               verify (LFW pair verification), sweep (the paper's grid of strategies x backbones x
               training sizes x seeds), report (a sweep's table and plot)
Run 'facetransfer COMMAND --help' for each."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facetransfer`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("FACETRANSFER_LOGLEVEL", "WARNING"))
    silence_known_noise()
    tune_malloc()  # CPU runs: reuse freed activation memory (see malloc_tuning.py)
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
