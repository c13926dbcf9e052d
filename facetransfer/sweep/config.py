"""The sweep configuration: shared data/trainer/model settings, a grid, and a list of methods.

Parsed by jsonargparse like ``facetransfer fit`` (several ``--config`` files, dotted overrides such as
``--data.root PATH``, ``--print_config``, every key checked against the signature it configures). A
sweep YAML reads like the experiment it describes::

    data:                          # FaceDataModule arguments, shared by every cell
      dataset: lfw
      root: ../shared/data/lfw-devtrain
      min_images_per_identity: 10
    trainer: {max_epochs: 20}      # Lightning Trainer arguments, shared
    model: {input_size: 160}       # FaceClassifier arguments, shared
    train_samples: [50, 100, 250, 500, all]   # or train_identities: [50, 200, all] (training people)
    seeds: [0]
    verify: {pairs: data/lfw/pairsDevTest.txt}   # optional: every cell also verifies these pairs
    methods:
      - {strategy: scratch, backbone: scratch_cnn, model: {lr: 1.0e-3}}
      - {strategy: features_logreg, backbone: mobilenet_v2, weights: IMAGENET1K_V1}

Each method's settings are the shared sections, its strategy's recipe and its own sections, a later
one's keys over an earlier one's (docs/reference.md). With ``data.split_by: identity`` every cell is
open-set (its test people were never trained on: it reports their pair verification, not top-1). A
``verify:`` section has every cell verify a pairs file with its final model too; the people that file
names are left out of every split. A mistake names its key::

    >>> load_sweep_config({"train_samples": [0]})
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: train_samples: 0 is not a positive integer or 'all'
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from jsonargparse.typing import OpenUnitInterval

from ..config_errors import check_config_files, known_keys, located_config_error
from ..errors import ConfigError
from ..strategies.base import MethodSpec
from ..strategies.methods import resolve_method
from ..strategies.sections import MANAGED_DATA_KEYS, MANAGED_SHARED_MODEL_KEYS, MANAGED_TRAINER_KEYS, plain, slug

#: what a cell's Trainer gets below the shared trainer section (no progress bar or summary per cell)
CELL_TRAINER_DEFAULTS = {"enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}
#: the grid's size axes: training images per cell, or training people per cell
SIZE_AXES = ("train_samples", "train_identities")
SECTIONS = {
    "data": "FaceDataModule arguments shared by every cell",
    "trainer": "Lightning Trainer arguments shared by every cell",
    "model": "FaceClassifier arguments shared by every cell",
}


def sweep_parser(typed: bool = True):
    """The jsonargparse parser of ``facetransfer sweep``'s config keys.

    ``typed``: the ``data``, ``trainer`` and ``model`` groups take their keys and types from
    :class:`~facetransfer.FaceDataModule`, Lightning's ``Trainer`` and :class:`~facetransfer.FaceClassifier`,
    as ``facetransfer fit`` does (this imports Lightning); without, they are plain mappings (``--help``).
    """
    from jsonargparse import ActionConfigFile, ArgumentParser
    from jsonargparse.typing import NonNegativeInt, PositiveInt

    parser = ArgumentParser(prog="facetransfer sweep", description="Run the paper's comparison: strategies x backbones x "
                            "training-set sizes x seeds, into one results folder.", exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="a sweep YAML (repeat to merge several)")
    parser.add_argument("--name", type=Optional[str], default=None, help="title of the report (default: the config file's name)")
    parser.add_argument("--output_dir", type=Optional[str], default=None,
                        help="results.csv, report.md, plot and logs (default: results/<name>)")
    if typed:
        import lightning as L

        from ..data import FaceDataModule
        from ..training.module import FaceClassifier

        skips = {"data": MANAGED_DATA_KEYS, "trainer": MANAGED_TRAINER_KEYS, "model": MANAGED_SHARED_MODEL_KEYS}
        for key, target in (("data", FaceDataModule), ("trainer", L.Trainer), ("model", FaceClassifier)):
            parser.add_class_arguments(target, key, skip=set(skips[key]), fail_untyped=False, sub_configs=True)
    else:
        for key, doc in SECTIONS.items():
            parser.add_argument(f"--{key}", type=Optional[dict[str, Any]], default=None,
                                help=f"{doc}: the --{key}.* options of 'facetransfer fit --help'")
    parser.add_argument("--train_samples", type=list[Union[PositiveInt, Literal["all"]]], default=["all"],
                        help="training-set sizes (positive integers or 'all')")
    parser.add_argument("--train_identities", type=Optional[list[Union[PositiveInt, Literal["all"]]]], default=None,
                        help="numbers of training people (positive integers or 'all'), each trained on all its "
                             "images: the grid's size axis instead of train_samples")
    parser.add_class_arguments(PairsVerification, "verify", sub_configs=True)
    parser.add_argument("--seeds", type=list[NonNegativeInt], default=[0], help="seeds (each seeds the split and the training)")
    parser.add_argument("--methods", type=list[dict[str, Any]], default=[],
                        help="methods: strategy + backbone (+ weights, and the sections the strategy accepts: "
                             "'facetransfer strategies')")
    parser.add_argument("--feature_cache_dir", type=Optional[str], default=None,
                        help="cache of frozen features (default: <output_dir>/features)")
    parser.add_argument("--checkpoints", type=Literal["best", "all", "none"], default="best",
                        help="checkpoints kept of a finished cell")
    parser.add_argument("--num_threads", type=Optional[PositiveInt], default=None,
                        help="torch CPU threads while the sweep runs (default: torch's)")
    return parser


@dataclass
class PairsVerification:
    """The ``verify:`` section: a pairs file every cell also verifies with its final model (the ``pairs_verify_*``
    columns); the people it names are left out of training.

    Args:
        pairs: an LFW-format pairs file (``pairsDevTest.txt``, ``pairs.txt``, ``facetransfer pairs make``'s).
        root: the folder of its images (default: the data root).
        flip: also embed each image flipped and average.
        far: the false accept rate of the TAR column.
    """

    pairs: Optional[str] = None
    root: Optional[str] = None
    flip: bool = False
    far: OpenUnitInterval = 1.0e-3


@dataclass
class SweepConfig:
    """A validated sweep: build it with :func:`load_sweep_config`."""

    name: str
    output_dir: Path
    data: dict[str, Any]
    train_samples: list[int | str]
    seeds: list[int]
    methods: list[MethodSpec]
    feature_cache_dir: Path
    checkpoints: str = "best"
    num_threads: int | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    method_order: list[str] = field(default_factory=list)  # every method of the config (report order)
    train_identities: list[int | str] | None = None  # the grid's axis over people instead of train_samples
    verify: PairsVerification | None = None

    def select(self, names: Sequence[str]) -> SweepConfig:
        """The same sweep restricted to methods whose name or strategy is in ``names``."""
        known = sorted({m.name for m in self.methods} | {m.strategy for m in self.methods})
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"--only: no method or strategy {unknown[0]!r} in this sweep; known: {', '.join(known)}")
        chosen = [m for m in self.methods if m.name in names or m.strategy in names]
        return replace(self, methods=chosen, method_order=self.method_order or [m.name for m in self.methods])

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration, as plain data (written next to the results)."""
        return plain({k: v for k, v in asdict(self).items()
                      if k != "method_order" and not (k in ("train_identities", "verify") and v is None)})

    @property
    def sizes(self) -> list[int | str]:
        """The values of the grid's size axis (:attr:`size_axis`)."""
        return self.train_samples if self.train_identities is None else self.train_identities

    @property
    def size_axis(self) -> str:
        """``train_samples`` (training images per cell) or ``train_identities`` (training people per cell)."""
        return SIZE_AXES[self.train_identities is not None]


def parse_sweep_args(argv: Sequence[str], parser=None):
    """Command-line arguments -> the parsed namespace (only the values given, typed and checked)."""
    parser = parser or sweep_parser()
    argv = list(argv)
    check_config_files(argv)  # a missing file or a YAML syntax error, named with its line
    try:
        return parser.parse_args(argv, defaults=False)
    except argparse.ArgumentError as err:
        raise located_config_error(err, argv, known_keys(parser)) from None


def build_sweep_config(parsed: Any, *, default_name: str = "sweep", sources: Sequence[str] = ()) -> SweepConfig:
    """A parsed namespace (given values only) -> a checked :class:`SweepConfig` (nothing is built or run)."""
    given = plain(parsed.as_dict())  # jsonargparse's typed values (PositiveInt ...) as plain Python
    data, trainer, model = (dict(given.get(key) or {}) for key in SECTIONS)
    if not given.get("methods"):
        raise ConfigError("methods is empty: the grid has no method (e.g. - {strategy: scratch, backbone: scratch_cnn})")
    shared = {"model": model, "trainer": trainer}
    methods = [resolve_method(i, m, {"trainer": CELL_TRAINER_DEFAULTS}, shared) for i, m in enumerate(given["methods"])]
    names = [m.name for m in methods]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"methods[{i}] and methods[{names.index(name)}] are both called {name!r}; give one a name:")
    train_samples = list(dict.fromkeys(given["train_samples"] if given.get("train_samples") is not None else ["all"]))
    people = given.get("train_identities")
    people = None if people is None else list(dict.fromkeys(people))
    seeds = list(dict.fromkeys(given["seeds"] if given.get("seeds") is not None else [0]))
    for axis, sizes in zip(SIZE_AXES, (train_samples, people)):
        if sizes == []:
            raise ConfigError(f"{axis} is empty: the grid has no training-set size (e.g. [50, 100, all])")
    if people is not None and train_samples != ["all"]:
        raise ConfigError(f"train_samples {train_samples} and train_identities {people}: the grid has one size axis, "
                          "training images or training people; remove one of them")
    verify = _pairs_verification(given.get("verify"), data)
    if not seeds:
        raise ConfigError("seeds is empty: the grid has no seed (e.g. [0])")
    name = given.get("name") or default_name
    output_dir = given.get("output_dir") or os.path.join("results", slug(name))
    return SweepConfig(
        name=name, output_dir=Path(output_dir), data=data, trainer=trainer, train_samples=train_samples, seeds=seeds,
        methods=methods, feature_cache_dir=Path(given.get("feature_cache_dir") or os.path.join(output_dir, "features")),
        checkpoints=given.get("checkpoints") or "best", num_threads=given.get("num_threads"), sources=list(sources),
        method_order=names, train_identities=people, verify=verify,
    )


def _pairs_verification(section: Mapping[str, Any] | None, data: dict[str, Any]) -> PairsVerification | None:
    """The checked ``verify:`` section; sets ``data.exclude_identities_in`` to its pairs file, so nobody it
    names is trained on."""
    if section is None:
        return None
    verify = PairsVerification(**section)
    if verify.pairs is None:
        raise ConfigError("verify.pairs is missing: the verify section names a pairs file (verify: {pairs: FILE})")
    if not os.path.isfile(verify.pairs):
        raise ConfigError(f"verify.pairs: {verify.pairs} is not a file (an LFW-format pairs file)")
    if verify.root is not None and not os.path.isdir(verify.root):
        raise ConfigError(f"verify.root: {verify.root} is not a folder")
    excluded = data.get("exclude_identities_in")
    if excluded is not None and os.path.abspath(excluded) != os.path.abspath(verify.pairs):
        raise ConfigError(f"data.exclude_identities_in: {excluded} is not verify.pairs ({verify.pairs}); the sweep "
                          "leaves the people of verify.pairs out of training itself: remove data.exclude_identities_in")
    data["exclude_identities_in"] = verify.pairs
    return verify


def load_sweep_config(
    config: str | os.PathLike | Mapping[str, Any] | Sequence[str | os.PathLike],
    overrides: Sequence[str] = (),
) -> SweepConfig:
    """Read YAML file(s) (later ones over earlier ones) or a mapping, apply command-line style
    overrides (``["--data.root", "x"]``), check everything.

    >>> cfg = load_sweep_config("configs/experiments/demo.yaml", ["--trainer.max_epochs", "1"])  # doctest: +SKIP
    """
    if isinstance(config, Mapping):
        configs, sources, default_name = [yaml.safe_dump(plain(dict(config)))], [], "sweep"
    else:
        paths = [config] if isinstance(config, (str, os.PathLike)) else list(config)
        if not paths:
            raise ConfigError("no sweep config given (use --config configs/experiments/<name>.yaml)")
        configs, sources, default_name = [os.fspath(p) for p in paths], [os.fspath(p) for p in paths], Path(paths[-1]).stem
    argv = [arg for c in configs for arg in ("--config", c)] + list(overrides)
    return build_sweep_config(parse_sweep_args(argv), default_name=default_name, sources=sources)


__all__ = ["CELL_TRAINER_DEFAULTS", "SIZE_AXES", "PairsVerification", "SweepConfig", "build_sweep_config",
           "load_sweep_config", "parse_sweep_args", "sweep_parser"]
