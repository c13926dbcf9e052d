"""The parser of the tool commands (``verify``, ``gallery``, ``align`` ...) and the option groups they share.

A :class:`ToolParser` (jsonargparse) refuses a mistyped or out-of-range option while parsing, in one
line; takes ``--config FILE`` for any option; and still reads the kebab spellings of earlier releases::

    >>> parser = ToolParser("verify", "LFW pair verification")
    >>> parser.add_groups(ModelOptions, LoadingOptions)
    >>> cfg = parser.parse(["--backbone", "scratch_cnn", "--batch_size", "8"])
    >>> ModelOptions.of(cfg).source(), LoadingOptions.of(cfg).batch_size
    ({'backbone': 'scratch_cnn'}, 8)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Optional

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser, DefaultHelpFormatter, Namespace
from jsonargparse.typing import NonNegativeInt, PositiveInt

from ..config_errors import FractionUpToOne, OneLineErrors, ParserError, check_config_files, located_config_error
from ..errors import ConfigError, WeightsError
from ..io.images import default_num_workers


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help (types, defaults; a ``%`` in a docstring is text, as in "40 % of its memory")
    under a description whose line breaks are kept."""


class ToolParser(OneLineErrors, ArgumentParser):
    """The parser of ``facetransfer COMMAND``: a mistake is one :class:`ConfigError` naming the option (and
    the ``--config`` file that set it); ``--batch-size`` still means ``--batch_size``, with a warning."""

    def __init__(self, command: str, description: str, epilog: str | None = None) -> None:
        super().__init__(prog=f"facetransfer {command}", description=description, epilog=epilog,
                         formatter_class=HelpFormatter)
        self.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options (repeat to merge)")

    def subcommand(self, name: str, help: str, description: str | None = None) -> ToolParser:
        """Add the subcommand ``name`` (the parsed options' ``action``) and return its parser."""
        parser = ToolParser(name, description or help)
        (self._subcommands_action or self.add_subcommands(dest="action")).add_subcommand(name, parser, help=help)
        return parser

    def add_groups(self, *groups: type, skip: set[str] | None = None) -> None:
        """Add option groups (the dataclasses below) as top-level options."""
        for kind in groups:
            self.add_class_arguments(kind, None, skip=skip)

    def add_face_crop(self, default: str) -> None:
        self.add_argument("--face_crop", type=Optional[FractionUpToOne], default=None,
                          help=f"central fraction of each image kept before resizing (default: {default})")

    def add_tta(self) -> None:
        """``--tta none|flip|jitter:N`` and ``--flip`` (the same as ``--tta flip``); read them with :func:`tta_of`."""
        self.add_argument("--tta", type=str, default="none",
                          help="test-time augmentation: each embedding averages the views of its image: none, flip "
                          "(the image and its mirror) or jitter:N (N seeded random jitters, as dlib's num_jitters; N "
                          "times the work)")
        self.add_argument("--flip", action="store_true", help="the same as --tta flip")

    def add_progress(self) -> None:
        """``--progress`` / ``--no-progress``; without either, a bar when stderr is a terminal."""
        self.add_argument("--progress", action=ActionYesNo(no_prefix="no-"), default=None,
                          help="progress bar on stderr (default: when stderr is a terminal)")

    def parse(self, argv: Sequence[str]) -> Namespace:
        """The options of ``argv``; a mistake raises one :class:`ConfigError` line."""
        argv = snake_case_args(self, argv)
        try:
            check_config_files(argv)
            return self.parse_args(argv)
        except ParserError as err:
            message = located_config_error(err.raw, argv, err.known, options=True)
        except ConfigError as err:
            message = err
        raise ConfigError(f"{message} (see '{self.prog} --help')") from None


def snake_case_args(parser: ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with the kebab spellings of earlier releases (``--batch-size``) of ``parser``'s options (and its
    subcommands') respelled (``--batch_size``), each with a one-line deprecation warning on stderr."""
    known, args = _option_strings(parser), [str(arg) for arg in argv]
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        snake = "--" + name[2:].replace("-", "_")
        if name.startswith("--") and name not in known and snake in known:
            saved, warnings.formatwarning = warnings.formatwarning, _one_line_warning
            try:  # a FutureWarning (not a print), so that warning filters and pytest see it
                warnings.warn(f"{name} is deprecated; use {snake}", FutureWarning)
            finally:
                warnings.formatwarning = saved
            args[i] = snake + eq + value
    return args


def _one_line_warning(message: Warning | str, *args: Any, **kwargs: Any) -> str:
    return f"facetransfer: warning: {message}\n"


def _option_strings(parser: ArgumentParser) -> set[str]:
    """The option strings of ``parser`` and of its subcommands."""
    found = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action.choices, dict):  # subcommands: name -> parser
            found.update(*map(_option_strings, action.choices.values()))
    return found


def tta_of(cfg: Namespace) -> str:
    """The test-time augmentation of ``--tta`` / ``--flip`` (:meth:`ToolParser.add_tta`), checked: a bad value, or
    ``--flip`` with another ``--tta``, is one :class:`ConfigError` line naming the option."""
    from ..features import TTA  # imports torch: after parsing

    try:
        tta = TTA.parse("flip" if cfg.get("flip") and cfg.get("tta") == "none" else cfg.get("tta"))
    except ConfigError as err:
        raise ConfigError(f"--tta: {err}") from None
    if cfg.get("flip") and tta.kind != "flip":
        raise ConfigError(f"--flip is --tta flip; give one of --flip and --tta {tta}")
    return str(tta)


def show_progress(cfg: Namespace) -> bool:
    """Whether to draw a progress bar: ``--progress`` / ``--no-progress``, else when stderr is a terminal."""
    return sys.stderr.isatty() if cfg.get("progress") is None else bool(cfg.progress)


# --- the shared option groups --------------------------------------------------------------------
class _Group:
    @classmethod
    def of(cls, cfg: Namespace):
        """The group's values in parsed options (a skipped option keeps its default)."""
        return cls(**{f.name: cfg[f.name] for f in fields(cls) if f.name in cfg})


@dataclass
class ModelOptions(_Group):
    """the model: a registered backbone with its weights, or a checkpoint

    Args:
        backbone: a registered backbone (facetransfer backbones)
        weights: pretrained weights of --backbone: FACE_API, IMAGENET1K_V1 ...
        weights_path: a local state dict for --backbone
        input_size: input side in pixels (default: the backbone's, or the checkpoint's)
        ckpt_path: a FaceClassifier checkpoint (its backbone's features are used)
    """

    backbone: Optional[str] = None
    weights: Optional[str] = None
    weights_path: Optional[str] = None
    input_size: Optional[PositiveInt] = None
    ckpt_path: Optional[str] = None

    def source(self, required: bool = False) -> dict[str, Any] | None:
        """The model as a gallery records it: ``{"ckpt_path": ...}`` or ``{"backbone": ..., "weights": ...}``;
        None when no model was given (a :class:`ConfigError` when ``required``)."""
        if self.ckpt_path:
            if self.backbone:
                raise ConfigError("give --backbone or --ckpt_path, not both")
            if self.weights or self.weights_path:
                raise ConfigError("--weights/--weights_path apply to --backbone; a checkpoint holds its own weights")
            if not Path(self.ckpt_path).is_file():
                raise WeightsError(f"checkpoint {self.ckpt_path} does not exist")
            source = {"ckpt_path": str(Path(self.ckpt_path).resolve()), "input_size": self.input_size}
        elif self.backbone:
            source = {"backbone": self.backbone, "weights": self.weights, "weights_path": self.weights_path,
                      "input_size": self.input_size}
        elif self.weights or self.weights_path or self.input_size:
            raise ConfigError("--weights/--weights_path/--input_size need --backbone")
        elif required:
            raise ConfigError("give the model: --backbone NAME (and --weights W), or --ckpt_path CK")
        else:
            return None
        return {key: value for key, value in source.items() if value is not None}


def build_model(source: Mapping[str, Any]):
    """The :class:`~facetransfer.FaceClassifier` of a model source (:meth:`ModelOptions.source`) in eval mode;
    a checkpoint is read by :func:`~facetransfer.training.module.load_model`."""
    from ..training.module import FaceClassifier, load_model  # imports Lightning: not while parsing

    if "ckpt_path" in source:
        model = load_model(source["ckpt_path"])
        if source.get("input_size"):
            model.backbone.preprocess = model.backbone.preprocess.resized(source["input_size"])
        return model
    if "backbone" not in source:
        raise ConfigError(f"unusable model description: {dict(source)}")
    return FaceClassifier(source["backbone"], weights=source.get("weights"), weights_path=source.get("weights_path"),
                          backbone_args=source.get("backbone_args"), input_size=source.get("input_size")).eval()


def default_face_crop(model: Any, align: str, data: Any) -> float:
    """The face crop a model sees when none is given: the training face crop of a model loaded from a checkpoint
    (unaligned images), else the default of the data source class ``data`` (``LFWSource``: 0.6, ``FolderSource``:
    1.0; 1.0 when aligned)."""
    info = getattr(model, "checkpoint_info", None)
    crop = info.face_crop if info is not None and align == "none" else None
    return data.default_face_crop(align) if crop is None else crop


@dataclass
class LoadingOptions(_Group):
    """image loading

    Args:
        batch_size: images per batch
        num_workers: image-loading processes (default: CPUs - 1, at most 8)
        device: cpu, cuda, cuda:1 ... (default: cuda when available)
    """

    batch_size: PositiveInt = 64
    num_workers: Optional[NonNegativeInt] = None
    device: Optional[str] = None

    @property
    def workers(self) -> int:
        return default_num_workers() if self.num_workers is None else self.num_workers

    @property
    def torch_device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class AlignOptions(_Group):
    """face alignment

    Args:
        align: detect and align every face first: none, or a face detector (mtcnn); detections are cached on
            disk, see docs/alignment.md
        align_template: five-point template of the alignment (default: the backbone's own)
    """

    align: str = "none"
    align_template: Optional[Literal["dlib", "arcface"]] = None


__all__ = [
    "AlignOptions", "HelpFormatter", "LoadingOptions", "ModelOptions", "ToolParser",
    "build_model", "default_face_crop", "show_progress", "snake_case_args", "tta_of",
]
