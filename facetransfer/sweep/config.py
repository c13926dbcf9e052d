"""The sweep configuration: shared data/trainer/model settings, a grid, and a list of methods.

Parsed by jsonargparse like ``facetransfer fit``: several ``--config`` files, dotted overrides
(``--data.root PATH``, ``--trainer.max_epochs 5``, ``--train_samples "[50, all]"``),
``--print_config``, and typed checks of every key against the signatures of
:class:`~facetransfer.FaceDataModule`, Lightning's ``Trainer`` and
:class:`~facetransfer.FaceClassifier`. A sweep YAML reads like the experiment it describes::

    data:                          # FaceDataModule arguments, shared by every cell
      dataset: lfw
      root: ../shared/data/lfw-devtrain
      min_images_per_identity: 10
    trainer: {max_epochs: 20}      # Lightning Trainer arguments, shared
    model: {input_size: 160}       # FaceClassifier arguments, shared
    train_samples: [50, 100, 250, 500, all]
    seeds: [0]
    methods:
      - {strategy: scratch, backbone: scratch_cnn, model: {lr: 1.0e-3}}
      - {strategy: features_logreg, backbone: mobilenet_v2, weights: IMAGENET1K_V1}

Each method's strategy (:mod:`facetransfer.strategies`) says which sections it accepts and
checks them. Settings merge as: the shared sections, then the strategy's recipe, then the
method's own sections. A mistake names its key::

    >>> load_sweep_config({"train_samples": [0]})
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: train_samples: 0 is not a positive integer or 'all'
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from ..config_errors import check_config_files, config_error, located_config_error
from ..errors import ConfigError

CHECKPOINT_POLICIES = ("best", "all", "none")
# data keys the sweep sets itself, with what to use instead
MANAGED_DATA_KEYS = {
    "train_samples": "set the top-level train_samples list",
    "seed": "set the top-level seeds list",
    "split_manifest": "a sweep builds its own split per seed",
    "predict_root": "a sweep does not predict",
    "preprocess": "each method's backbone decides the preprocessing (use model.input_size)",
    "features": "the sweep's feature store serves frozen features",
}
MANAGED_TRAINER_KEYS = {
    "logger": "each cell logs to TensorBoard under <output_dir>/logs",
    "callbacks": "cells use facetransfer's default callbacks (best checkpoint by val/acc)",
    "default_root_dir": "cells write under <output_dir>/logs",
}
MANAGED_MODEL_KEYS = {
    "backbone": "set each method's backbone:",
    "weights": "set each method's weights:",
    "weights_path": "set each method's weights_path:",
    "class_names": "the identities come from the data",
    "freeze": "each method's strategy sets it (where a strategy lets you choose: methods[i].model.freeze)",
    "features": "the sweep's feature store serves frozen features",
}
METHOD_KEYS = ("name", "strategy", "backbone", "weights", "weights_path")
# settings that change speed or logging, not results: they may differ when a sweep is resumed
RUNTIME_DATA_KEYS = ("root", "num_workers", "check_images", "eval_batch_size", "on_bad_image")
RUNTIME_TRAINER_KEYS = (
    "accelerator", "devices", "strategy", "num_nodes", "enable_progress_bar", "enable_model_summary",
    "log_every_n_steps", "profiler", "benchmark", "barebones", "enable_autolog_hparams", "model_registry",
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "method"


def _plain(value: Any) -> Any:
    """JSON-comparable copy (tuples -> lists, paths -> strings)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


# --- jsonargparse ---------------------------------------------------------------------------------
def _parser(**kwargs: Any):
    from lightning.pytorch.cli import LightningArgumentParser

    return LightningArgumentParser(exit_on_error=False, allow_abbrev=False, **kwargs)


def parse_section(target: Callable[..., Any], values: Mapping[str, Any], where: str, skip: set[str] = frozenset()) -> dict[str, Any]:
    """Check ``values`` against the keyword arguments of ``target`` (a class or function) -> the typed values."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys, got {values!r}")
    parser = _parser()
    if isinstance(target, type):
        parser.add_class_arguments(target, skip=set(skip), fail_untyped=False)
    else:
        parser.add_function_arguments(target, skip=set(skip), fail_untyped=False)
    try:
        parsed = parser.parse_object(dict(values), defaults=False)
    except (argparse.ArgumentError, TypeError, ValueError) as err:
        raise config_error(err, where, {"": list(parser.get_defaults().keys())}) from None
    out = _plain(parsed.as_dict())  # jsonargparse's typed values (PositiveInt ...) as plain Python
    return {k: out[k] for k in values}


def sweep_parser():
    """The jsonargparse parser of ``facetransfer sweep`` (config keys and run options)."""
    import lightning as L
    from jsonargparse import ActionConfigFile
    from jsonargparse.typing import NonNegativeInt, PositiveInt

    from ..data import FaceDataModule
    from ..module import FaceClassifier

    parser = _parser(prog="facetransfer sweep", description="Run the paper's comparison: strategies x backbones x "
                     "training-set sizes x seeds, into one results folder.")
    parser.add_argument("--config", action=ActionConfigFile, help="a sweep YAML (repeat to merge several)")
    parser.add_argument("--name", type=Optional[str], default=None, help="title of the report (default: the config file's name)")
    parser.add_argument("--output_dir", type=Optional[str], default=None,
                        help="results.csv, report.md, plot and logs (default: results/<name>)")
    parser.add_class_arguments(FaceDataModule, "data", skip=set(MANAGED_DATA_KEYS), sub_configs=True)
    parser.add_class_arguments(L.Trainer, "trainer", skip=set(MANAGED_TRAINER_KEYS), fail_untyped=False, sub_configs=True)
    parser.add_class_arguments(FaceClassifier, "model", skip=set(MANAGED_MODEL_KEYS), sub_configs=True)
    parser.add_argument("--train_samples", type=list[Union[PositiveInt, Literal["all"]]], default=["all"],
                        help="training-set sizes (positive integers or 'all')")
    parser.add_argument("--seeds", type=list[NonNegativeInt], default=[0], help="seeds (each seeds the split and the training)")
    parser.add_argument("--methods", type=list[dict[str, Any]], default=[],
                        help="methods: strategy + backbone (+ weights, and the sections the strategy accepts)")
    parser.add_argument("--feature_cache_dir", type=Optional[str], default=None,
                        help="cache of frozen features (default: <output_dir>/features)")
    parser.add_argument("--checkpoints", type=Literal["best", "all", "none"], default="best",
                        help="checkpoints kept of a finished cell")
    parser.add_argument("--num_threads", type=Optional[PositiveInt], default=None,
                        help="torch CPU threads while the sweep runs (default: torch's)")
    return parser


# --- the resolved configuration ----------------------------------------------------------------
@dataclass(frozen=True)
class MethodSpec:
    """One line of the comparison: a strategy applied to a backbone, with its settings resolved.

    ``model`` holds the FaceClassifier arguments (shared ones, the strategy's recipe and the
    method's own merged; ``freeze`` set), ``trainer`` the Trainer arguments, ``data`` loader
    overrides, ``options`` the strategy's own sections (e.g. ``{"logreg": {...}}``).
    """

    name: str
    strategy: str
    backbone: str
    weights: str | None = None
    weights_path: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def runner(self):
        """The registered :class:`~facetransfer.strategies.Strategy` of this method."""
        from ..strategies import get_strategy

        return get_strategy(self.strategy)

    @property
    def slug(self) -> str:
        """The method's name as a folder name."""
        return _slug(self.name)

    @property
    def weights_label(self) -> str:
        if self.weights:
            return self.weights
        if self.weights_path:
            return os.path.basename(self.weights_path)
        return "none"

    def classifier_args(self) -> dict[str, Any]:
        """Keyword arguments of :class:`FaceClassifier` for this method."""
        return {"backbone": self.backbone, "weights": self.weights, "weights_path": self.weights_path, **self.model}

    def fingerprint(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """What determines this method's results (runtime-only settings left out)."""
        merged_data = {k: v for k, v in {**data, **self.data}.items() if k not in RUNTIME_DATA_KEYS}
        trainer = {k: v for k, v in self.trainer.items() if k not in RUNTIME_TRAINER_KEYS}
        return _plain(
            {
                "strategy": self.strategy,
                "backbone": self.backbone,
                "weights": self.weights,
                "weights_path": self.weights_path,
                "model": self.model,
                "trainer": trainer,
                "data": merged_data,
                **self.options,
            }
        )


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

    def method(self, name: str) -> MethodSpec:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)

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
        return _plain(
            {
                "name": self.name,
                "output_dir": str(self.output_dir),
                "data": self.data,
                "trainer": self.trainer,
                "train_samples": self.train_samples,
                "seeds": self.seeds,
                "feature_cache_dir": str(self.feature_cache_dir),
                "checkpoints": self.checkpoints,
                "num_threads": self.num_threads,
                "methods": [m.__dict__ for m in self.methods],
                "sources": self.sources,
            }
        )


def resolve_method(index: int, raw: Any, shared_model: Mapping[str, Any], shared_trainer: Mapping[str, Any]) -> MethodSpec:
    """One ``methods[i]`` entry -> a :class:`MethodSpec`, checked by its strategy's sections."""
    from ..models import list_backbones
    from ..strategies import get_strategy

    where = f"methods[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping (strategy, backbone, ...), got {raw!r}")
    if raw.get("strategy") is None:
        from ..strategies import list_strategies

        raise ConfigError(f"{where}.strategy is missing; known: {', '.join(list_strategies())}")
    try:
        strategy = get_strategy(str(raw["strategy"]))
    except ConfigError as err:
        raise ConfigError(f"{where}.strategy: {err}") from None
    sections = {s.key: s for s in strategy.sections}
    unknown = [k for k in raw if k not in METHOD_KEYS and k not in sections]
    if unknown:
        accepted = ", ".join(sorted([*METHOD_KEYS, *sections]))
        raise ConfigError(f"unknown key '{where}.{unknown[0]}'; a {strategy.name} method accepts: {accepted}")
    backbones = list_backbones()
    backbone = raw.get("backbone")
    if not isinstance(backbone, str) or not backbone:
        raise ConfigError(f"{where}.backbone is missing; known: {', '.join(backbones)}")
    if backbone not in backbones:
        raise ConfigError(f"{where}.backbone: unknown backbone {backbone!r}; known: {', '.join(backbones)}")
    weights, weights_path = raw.get("weights"), raw.get("weights_path")
    for key, value in (("weights", weights), ("weights_path", weights_path)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string or null, got {value!r}")
    if strategy.pretrained is False and (weights or weights_path):
        raise ConfigError(
            f"{where}: strategy {strategy.name} starts from random weights; remove weights/weights_path "
            f"(got {weights or weights_path!r}), or use a strategy that starts from pretrained weights"
        )

    shared = {"model": dict(shared_model), "trainer": dict(shared_trainer)}
    resolved: dict[str, dict[str, Any]] = {}
    for key, section in sections.items():
        if key not in ("model", "trainer", "data") and (
            (key not in raw and key not in strategy.defaults) or (key in raw and raw[key] in (None, False))
        ):
            continue  # an optional section left out, or turned off with `early_stopping: false`
        own = section.check(raw.get(key) or {}, f"{where}.{key}")
        inherited = {k: v for k, v in shared.get(key, {}).items() if section.only is None or k in section.only}
        base, recipe = strategy.cell_defaults.get(key, {}), strategy.defaults.get(key, {})
        resolved[key] = {**base, **inherited, **recipe, **own}
    model = resolved.pop("model", {})
    own_freeze = (raw.get("model") or {}).get("freeze")
    if own_freeze is not None:
        strategy.check_freeze(own_freeze, where)
    model["freeze"] = strategy.freeze or model.get("freeze", strategy.default_freeze)
    trainer = resolved.pop("trainer", {})
    data = resolved.pop("data", {})
    name = raw.get("name") or f"{strategy.name}/{backbone}"
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string, got {name!r}")
    return MethodSpec(name, strategy.name, backbone, weights, weights_path, model, trainer, data, resolved)


def _yaml_text(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(json.loads(json.dumps(dict(config), default=str)))


def parse_sweep_args(argv: Sequence[str], parser=None):
    """Command-line arguments -> the parsed namespace (only the values given, typed and checked)."""
    parser = parser or sweep_parser()
    argv = list(argv)
    check_config_files(argv)  # a missing file or a YAML syntax error, named with its line
    try:
        return parser.parse_args(argv, defaults=False)
    except argparse.ArgumentError as err:
        defaults = parser.get_defaults()
        known = {"": [k for k in defaults.keys() if "." not in k]}
        for group in ("data", "trainer", "model"):
            known[group] = list(defaults[group].keys())
        raise located_config_error(err, argv, known) from None


def build_sweep_config(parsed: Any, *, default_name: str = "sweep", sources: Sequence[str] = ()) -> SweepConfig:
    """A parsed namespace (given values only) -> a checked :class:`SweepConfig` (nothing is built or run)."""
    given = _plain(parsed.as_dict())  # jsonargparse's typed values (PositiveInt ...) as plain Python
    data = dict(given.get("data") or {})
    trainer = dict(given.get("trainer") or {})
    model = dict(given.get("model") or {})
    methods_raw = given.get("methods") or []
    if not methods_raw:
        raise ConfigError("methods is empty: the grid has no method (e.g. - {strategy: scratch, backbone: scratch_cnn})")
    methods = [resolve_method(i, m, model, trainer) for i, m in enumerate(methods_raw)]
    seen: dict[str, int] = {}
    for i, m in enumerate(methods):
        if m.name in seen:
            raise ConfigError(f"methods[{i}] and methods[{seen[m.name]}] are both called {m.name!r}; give one a name:")
        seen[m.name] = i
    train_samples = list(dict.fromkeys(given["train_samples"] if given.get("train_samples") is not None else ["all"]))
    seeds = list(dict.fromkeys(given["seeds"] if given.get("seeds") is not None else [0]))
    if not train_samples:
        raise ConfigError("train_samples is empty: the grid has no training-set size (e.g. [50, 100, all])")
    if not seeds:
        raise ConfigError("seeds is empty: the grid has no seed (e.g. [0])")
    name = given.get("name") or default_name
    output_dir = given.get("output_dir") or os.path.join("results", _slug(name))
    return SweepConfig(
        name=name,
        output_dir=Path(output_dir),
        data=data,
        trainer=trainer,
        train_samples=train_samples,
        seeds=seeds,
        methods=methods,
        feature_cache_dir=Path(given.get("feature_cache_dir") or os.path.join(output_dir, "features")),
        checkpoints=given.get("checkpoints") or "best",
        num_threads=given.get("num_threads"),
        sources=list(sources),
        method_order=[m.name for m in methods],
    )


def load_sweep_config(
    config: str | os.PathLike | Mapping[str, Any] | Sequence[str | os.PathLike],
    overrides: Sequence[str] = (),
) -> SweepConfig:
    """Read YAML file(s) (later ones over earlier ones) or a mapping, apply command-line style
    overrides (``["--data.root", "x"]``), check everything.

    >>> cfg = load_sweep_config("configs/experiments/demo.yaml", ["--trainer.max_epochs", "1"])  # doctest: +SKIP
    """
    if isinstance(config, Mapping):
        configs, sources, default_name = [_yaml_text(config)], [], "sweep"
    else:
        paths = [config] if isinstance(config, (str, os.PathLike)) else list(config)
        if not paths:
            raise ConfigError("no sweep config given (use --config configs/experiments/<name>.yaml)")
        configs, sources, default_name = [os.fspath(p) for p in paths], [os.fspath(p) for p in paths], Path(paths[-1]).stem
    argv = [arg for c in configs for arg in ("--config", c)] + list(overrides)
    return build_sweep_config(parse_sweep_args(argv), default_name=default_name, sources=sources)


__all__ = [
    "MethodSpec",
    "SweepConfig",
    "build_sweep_config",
    "load_sweep_config",
    "parse_section",
    "parse_sweep_args",
    "resolve_method",
    "sweep_parser",
]
