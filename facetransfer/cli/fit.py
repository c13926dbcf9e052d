"""``facetransfer fit / validate / test / predict``: LightningCLI over FaceClassifier and FaceDataModule.

    facetransfer fit --config configs/linear_probe.yaml --data.dataset folder --data.root faces/
    facetransfer fit --strategy finetune --model.backbone resnet18 --model.weights IMAGENET1K_V1
    facetransfer test --ckpt_path runs/.../best-epoch=17.ckpt
    facetransfer predict --ckpt_path runs/.../best-epoch=17.ckpt --data.predict_root new_photos/ --top_k 3

``strategy: NAME`` in a config (or ``--strategy NAME``) starts from that strategy's recipe, as a sweep's
method of it does: its freeze policy and recipe values are the defaults of ``model``, ``trainer`` and
``data`` (the config and the command line override them), and its callbacks (early stopping, LP-FT's
head fit) join the trainer's. A mistake is one line naming the config file, the key, the value and what is
allowed (no usage text). Only these commands import PyTorch Lightning.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from operator import attrgetter
from pathlib import Path
from typing import Optional

import yaml
from jsonargparse.typing import ClosedUnitInterval
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ..config_errors import OneLineErrors, ParserError, check_config_files, check_ranges, located_config_error
from ..data import FaceDataModule
from ..errors import ConfigError, FaceTransferError
from ..io.checkpoint import read_checkpoint
from ..io.filesystem import filesystem_error, find_os_error, raised_in
from ..models import backbone_preprocess
from ..strategies import get_strategy
from ..strategies.base import MethodSpec
from ..strategies.lightning import monitoring
from ..training.module import MODEL_RANGES, FaceClassifier, restoring_from_checkpoint
from ..training.prediction import PredictionReport
from ..training.run_folder import RunFolderGuard, StepWatcher
from ..training.trainer import (
    TRAINER_RANGES,
    default_callbacks,
    find_last_checkpoint,
    with_atomic_checkpoints,
    with_trainer_defaults,
)
from .checkpoint_conflicts import MODEL_OPTIONS, SPLIT_OPTIONS, checkpoint_conflicts, conflict_error, given_options
from .commands import DESCRIPTION
from .options import HelpFormatter

TRAINER_DEFAULTS = {"default_root_dir": "runs"}


class OneLineErrorParser(OneLineErrors, LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are a :class:`ParserError` (one line), not usage text + exit."""


def _preprocess_config(backbone, weights, backbone_args, input_size) -> dict | None:
    """The data's ``preprocess`` from the model's options (a plain mapping, so configs can be saved).

    Bad model options give None here: building the model then reports them in one line."""
    try:
        return backbone_preprocess(backbone, weights, backbone_args, input_size).to_dict()
    except (FaceTransferError, TypeError):
        return None


def named_strategy(argv: Sequence[str], subcommand: str | None = None) -> str | None:
    """The strategy the command line names: ``--strategy NAME`` or a ``--config`` file's ``strategy:`` (also
    under the subcommand's key, ``fit: {strategy: ...}``), a later one over an earlier one as jsonargparse reads them."""
    found = None
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        value = value or (argv[i + 1] if i + 1 < len(argv) else "")
        if flag == "--strategy":
            found = value
        elif flag in ("--config", "-c") and os.path.isfile(value):
            data = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
            for node in (data, data.get(subcommand) if isinstance(data, dict) else None):
                if isinstance(node, dict) and node.get("strategy"):
                    found = str(node["strategy"])
    return found


class FaceTransferCLI(LightningCLI):
    """LightningCLI over :class:`FaceClassifier` and :class:`FaceDataModule`."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        self.method: MethodSpec | None = None  # the --strategy's recipe, resolved
        super().__init__(
            FaceClassifier, FaceDataModule, trainer_defaults=TRAINER_DEFAULTS, save_config_kwargs={"overwrite": True},
            seed_everything_default=0, parser_kwargs={"description": DESCRIPTION, "formatter_class": HelpFormatter},
            parser_class=OneLineErrorParser, args=list(args) if args is not None else None, run=run,
        )

    def parse_arguments(self, parser, args) -> None:
        """Parse; a mistake is one line naming the config file, the key, the value and what is allowed."""
        self.argv = argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        command = f"facetransfer {argv[0]}" if argv and not argv[0].startswith("-") else "facetransfer"
        try:
            check_config_files(argv)
            section = self._start_from_recipe(parser, argv)
            super().parse_arguments(parser, args)
            config = self.config[section] if section else self.config
            check_ranges(config.get("model") or {}, MODEL_RANGES, "model.")  # refused now, not by the run
            check_ranges(config.get("trainer") or {}, TRAINER_RANGES, "trainer.")
            parsed = config.get("strategy")
            if parsed != (self.method.strategy if self.method else None):
                raise ConfigError(f"strategy {parsed} is set where its recipe cannot be read before parsing: give it "
                                  f"as --strategy {parsed} or at the top of a --config file")
        except ParserError as err:
            located = located_config_error(err.raw, argv, err.known, sections=argv[:1])
            raise ConfigError(f"{located} (see '{command} --help')") from None
        except ConfigError as err:
            raise ConfigError(f"{err} (see '{command} --help')") from None

    def _start_from_recipe(self, parser, argv: list[str]) -> str | None:
        """The named strategy's freeze policy and recipe become the defaults of model, trainer and data.
        Returns the subcommand (None: LightningCLI without subcommands)."""
        subcommands = getattr(self, "_subcommand_parsers", {})
        section = next((arg for arg in argv if arg in subcommands), None)
        name = named_strategy(argv, section)
        if name is None:
            return section
        strategy = get_strategy(name)
        if strategy.trains != "lightning":
            raise ConfigError(f"strategy {name} fits a solver on frozen features, not a network: run it in "
                              "'facetransfer sweep'")
        settings = strategy.settings(where="strategy " + name)
        target = subcommands[section] if section else parser
        target.set_defaults({f"{key}.{k}": v for key in ("model", "trainer", "data") for k, v in settings.pop(key).items()})
        self.method = MethodSpec(name, name, "", options=settings)
        return section

    def add_arguments_to_parser(self, parser) -> None:
        """The data and the model are configured in one place and agree by construction:
        the model's options decide the input preprocessing of the data (at parse time, as
        torchvision's weights carry their transforms); the data gives the model its identities,
        whether its val/test people are others (open set) and its frozen-feature provider when both are built."""
        parser.link_arguments(("model.backbone", "model.weights", "model.backbone_args", "model.input_size"),
                              "data.preprocess", compute_fn=_preprocess_config, apply_on="parse")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data", "model.features", compute_fn=attrgetter("features"), apply_on="instantiate")
        parser.link_arguments("data", "model.open_set", compute_fn=attrgetter("open_set"), apply_on="instantiate")
        parser.link_arguments("data", "model.eval_class_names", compute_fn=attrgetter("eval_class_names"),
                              apply_on="instantiate")
        parser.add_argument("--strategy", type=Optional[str], default=None,
                            help="start from this strategy's freeze policy, recipe and callbacks ('facetransfer strategies'); "
                                 "the config and the command line override its values")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument("--lr_find", type=bool, default=False,
                                help="first run Lightning's learning-rate finder and train with its suggestion as model.lr")
        if subcommand == "predict":  # options of the prediction report, not of Trainer.predict
            parser.add_argument("--top_k", type=int, default=5, help="identities listed per image, most probable first")
            parser.add_argument("--unknown_below", type=Optional[ClosedUnitInterval], default=None,
                                help="decide 'unknown' when an image's top probability is lower (0..1); the "
                                     "identities and probabilities stay the model's")
        if subcommand in ("test", "validate"):
            parser.add_argument("--faces", type=bool, default=True, help="the confusion figure, misclassified "
                                "faces and the embedding projector in TensorBoard (test)")
        return parser

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), {}) if self.subcommand else {}
        trainer = config.get("trainer")
        if trainer is not None:
            with_trainer_defaults(trainer)
        ckpt = config.get("ckpt_path")
        if trainer is not None and self.subcommand != "fit" and ckpt and ckpt != "last" and Path(ckpt).is_file():
            self._log_next_to_the_run(trainer, Path(ckpt))
        if trainer is not None and self.subcommand == "predict" and trainer.get("logger") in (None, True):
            # predictions.csv gets a versioned folder, and TensorBoard no run without anything to show
            trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                 "init_args": {"save_dir": trainer.get("default_root_dir") or "runs", "name": "predict"}}

    def _log_next_to_the_run(self, trainer, ckpt: Path) -> None:
        """``test``/``validate``/``predict`` of a checkpoint log into its run folder (``<run>/test/version_N``)
        unless the command line chose a folder or a logger."""
        if trainer.get("default_root_dir") != TRAINER_DEFAULTS["default_root_dir"] or trainer.get("logger") not in (None, True):
            return
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        trainer["default_root_dir"] = str(run)
        if self.subcommand != "predict":
            trainer["logger"] = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                 "init_args": {"save_dir": str(run), "name": self.subcommand}}

    def instantiate_classes(self) -> None:
        ckpt = self.config.get(str(self.subcommand), {}).get("ckpt_path") if self.subcommand else None
        restoring = bool(ckpt) and self.subcommand in ("test", "validate", "predict")
        with restoring_from_checkpoint() if restoring else nullcontext():  # the checkpoint holds the weights
            super().instantiate_classes()
        if self.method is not None and not restoring:  # the model the strategy trains (built: its options are valid)
            model = self.model.hparams
            self.method.runner.check_freeze(model.freeze, "")
            self.method.runner.check_weights(model.weights or model.weights_path, "")

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path``: the model is rebuilt with the checkpoint's hyperparameters and the data with its
        split (the checkpoint is read with ``weights_only=True``; a damaged file is one clear error)."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path == "last" or not Path(ckpt_path).is_file():
            return
        checkpoint = read_checkpoint(ckpt_path)
        # options given on the command line (or in a config) that contradict the checkpoint are an error
        alternatives = {f"model.{k}": v for k, v in MODEL_OPTIONS.items()}
        alternatives |= {f"data.{k}": v for k, v in SPLIT_OPTIONS.items()}
        subparser = self._subcommand_parsers[subcommand]
        given = given_options(lambda: self.parser.parse_args(self.argv)[subcommand], subparser, alternatives)
        found = checkpoint_conflicts(config, given, checkpoint, split_from_checkpoint=subcommand != "fit")
        if found:
            raise conflict_error(found, ckpt_path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        accepted = set(inspect.signature(FaceClassifier.__init__).parameters) - {"self", "class_names", "features"}
        model = {k: v for k, v in hparams.items() if k in accepted}
        update = {"model": model}
        if subcommand != "fit" and not config.get("data", {}).get("split_manifest"):
            update["data"] = {"split_manifest": str(ckpt_path)}  # the identities and test set it was trained on
        self.config = self.parser.parse_object({subcommand: update}, self.config)

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
        if self.config["fit"].get("lr_find"):
            self._find_learning_rate()

    def before_predict(self) -> None:
        self._resolve_last_checkpoint()

    def _find_learning_rate(self) -> None:
        """Lightning's ``Tuner.lr_find`` on the head's learning rate (``model.lr``); its plot goes to the run folder."""
        from lightning.pytorch.tuner import Tuner

        finder = Tuner(self.trainer).lr_find(self.model, datamodule=self.datamodule, attr_name="lr")
        if finder is None or not self.trainer.is_global_zero:
            return
        suggestion = finder.suggestion()
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        finder.plot(suggest=suggestion is not None).savefig(folder / "lr_find.png")
        if suggestion is None:
            print(f"facetransfer: the learning-rate finder saw too few steps to suggest a rate (more data or epochs); "
                  f"model.lr stays {self.model.hparams.lr:g} (plot: {folder / 'lr_find.png'})")
        else:
            print(f"facetransfer: learning-rate finder suggests model.lr {suggestion:.3g} (plot: {folder / 'lr_find.png'})")

    def before_test(self) -> None:
        self._resolve_last_checkpoint()
        self.config_init[self.subcommand]["verbose"] = False  # printed rounded by after_test

    before_validate = before_test

    def after_test(self) -> None:
        """The metrics as a table rounded to 4 digits (full precision in the logs)."""
        metrics = {k: float(v) for k, v in sorted(self.trainer.callback_metrics.items()) if k.startswith(("test/", "val/", "verify/"))}
        if not metrics or not self.trainer.is_global_zero:
            return
        width = max(len(k) for k in metrics)
        print("\n".join(f"{name:<{width}}  {value:.4f}" for name, value in metrics.items()))
        logger = self.trainer.logger
        if logger is not None and getattr(logger, "log_dir", None):
            print(f"facetransfer: logs in {logger.log_dir}")

    after_validate = after_test

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the command; when it fails before its first step, remove the run folder it created (nothing
        of a run that trained is touched), and report a filesystem fault as one line with what was kept."""
        guard = RunFolderGuard.before(self.trainer)
        watcher = next((c for c in self.trainer.callbacks if isinstance(c, StepWatcher)), None)
        try:
            super()._run_subcommand(subcommand)
        except BaseException as err:
            stepped = watcher is None or watcher.stepped
            removed = guard.clean_up_after_failure(self.trainer, stepped)
            ckpt = self.config_init[subcommand].get("ckpt_path")
            if isinstance(err, FaceTransferError) and ckpt and str(err).startswith("the checkpoint "):
                raise type(err)(f"checkpoint {ckpt}{str(err)[len('the checkpoint'):]}") from None  # name the file
            fault = find_os_error(err) if isinstance(err, Exception) and not isinstance(err, FaceTransferError) else None
            if fault is not None:
                logs = getattr(self.trainer.logger, "log_dir", None) if raised_in(fault, "tensorboard") else None
                raise filesystem_error(fault, path=logs, kept=self._what_was_kept(stepped, removed)) from err
            raise

    def _what_was_kept(self, stepped: bool, removed: list[Path]) -> str:
        if not stepped:
            return "nothing was trained or tested" + ("; its empty run folder was removed" if removed else "")
        folder = getattr(self.trainer.logger, "log_dir", None) or self.trainer.default_root_dir  # no collective here
        return f"what the run wrote before, in {folder}, is kept"

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        """Add facetransfer's default callbacks, minus those the trainer options turn off."""
        options = self.config[self.subcommand] if self.subcommand else {}
        defaults = default_callbacks(config.get("enable_checkpointing") is not False, config.get("logger") is not False,
                                     faces=options.get("faces", True))
        defaults.append(StepWatcher())  # for the clean-up of a run that fails before its first step
        if self.method is not None and self.subcommand in ("fit", None):  # early stopping on the model's metric
            defaults += self.method.runner.callbacks(monitoring(self.method, self.model.selection_metric))
        if self.subcommand == "predict":
            defaults.append(PredictionReport(top_k=options.get("top_k", 5), unknown_below=options.get("unknown_below")))
        config["plugins"] = with_atomic_checkpoints(config.get("plugins"))  # atomic, weights_only checkpoint files
        return super()._instantiate_trainer(config, [*callbacks, *defaults])

    def after_fit(self) -> None:
        # the val/acc checkpoint, also when a config adds others (e.g. every_n_train_steps, no monitor)
        monitored = [c for c in self.trainer.checkpoint_callbacks if getattr(c, "monitor", None) and c.best_model_path]
        ckpt = monitored[0] if monitored else self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and ckpt is not None and ckpt.best_model_path:
            score = ckpt.best_model_score
            shown = f" ({ckpt.monitor} {float(score):.4f})" if score is not None and ckpt.monitor else ""
            print(f"facetransfer: best checkpoint {ckpt.best_model_path}{shown}")
            print(f"facetransfer: test it with: facetransfer test --ckpt_path {ckpt.best_model_path}")


__all__ = ["FaceTransferCLI"]
