"""The sweep configuration: shared data/trainer/model settings, a grid, and a list of methods.

A sweep YAML reads like the experiment it describes::

    data:                          # FaceDataModule arguments, shared by every cell
      dataset: lfw
      root: ../shared/data/lfw-devtrain
      min_images_per_identity: 10
    trainer: {max_epochs: 20}      # Lightning Trainer arguments, shared
    model: {lr: 1.0e-4}            # FaceClassifier arguments, shared (methods may override)
    train_samples: [50, 100, 250, 500, all]
    seeds: [0]
    methods:
      - {strategy: scratch, backbone: scratch_cnn, model: {lr: 1.0e-3}}
      - {strategy: features_logreg, backbone: mobilenet_v2, weights: IMAGENET1K_V1}

Every key is checked before anything runs; a mistake names its key::

    >>> load_sweep_config({"train_samples": [0], "methods": [{"strategy": "scratch", "backbone": "scratch_cnn"}]})
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: train_samples[0]: must be a positive integer or 'all', got 0
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

#: the four ways of learning a face classifier that a sweep compares (the paper's three + a Lightning linear probe)
STRATEGIES: dict[str, str] = {
    "scratch": "random initialisation, every layer trained (the paper's baseline CNN)",
    "linear_probe": "frozen backbone, a linear head trained by Lightning (Adam, epochs)",
    "finetune": "pretrained backbone, first stages frozen (first:2 unless model.freeze says), the rest trained",
    "features_logreg": "the paper's feature extraction + scikit-learn LogisticRegression (seconds, not epochs)",
}
CHECKPOINT_POLICIES = ("best", "all", "none")
DEFAULT_FINETUNE_FREEZE = "first:2"

TOP_LEVEL_KEYS = {
    "name": "a title for the report (default: the config file's name)",
    "output_dir": "folder of results.csv, report.md, the plot and TensorBoard logs (default: results/<name>)",
    "data": "FaceDataModule arguments shared by all cells",
    "trainer": "Lightning Trainer arguments shared by all Lightning cells",
    "model": "FaceClassifier arguments shared by all methods (a method's own model: wins)",
    "train_samples": "list of training-set sizes (positive integers or 'all')",
    "seeds": "list of seeds (each seeds the split and the training)",
    "methods": "list of methods: strategy + backbone (+ weights, model, trainer, data, logreg)",
    "feature_cache_dir": "where features_logreg/linear_probe features are cached (default: <output_dir>/features)",
    "checkpoints": "which checkpoints of a finished cell to keep: best (default), all, none",
    "num_threads": "torch CPU threads while the sweep runs (default: torch's; 1 suits small shared CPUs)",
}
METHOD_KEYS = {
    "name": "label of the method in results and plots (default: <strategy>/<backbone>)",
    "strategy": ", ".join(STRATEGIES),
    "backbone": "a registered backbone (facetransfer backbones)",
    "weights": "pretrained weights name, e.g. IMAGENET1K_V1 (null: random init)",
    "weights_path": "a local state dict to start from",
    "model": "FaceClassifier arguments of this method",
    "trainer": "Trainer arguments of this method",
    "data": "loader arguments of this method: " + ", ".join(("augment", "batch_size", "eval_batch_size", "num_workers")),
    "logreg": "scikit-learn LogisticRegression arguments (features_logreg only)",
}
# data keys the sweep sets itself, with what to use instead
_MANAGED_DATA_KEYS = {
    "train_samples": "set the top-level train_samples list",
    "seed": "set the top-level seeds list",
    "split_manifest": "a sweep builds its own split per seed",
    "predict_root": "a sweep does not predict",
    "preprocess": "each method's backbone decides the preprocessing (use model.input_size)",
}
_MANAGED_TRAINER_KEYS = {
    "logger": "each cell logs to TensorBoard under <output_dir>/logs",
    "callbacks": "cells use facetransfer's default callbacks (best/last checkpoints by val/acc)",
    "default_root_dir": "cells write under <output_dir>/logs",
}
_MANAGED_MODEL_KEYS = {
    "backbone": "set the method's backbone:",
    "weights": "set the method's weights:",
    "weights_path": "set the method's weights_path:",
    "class_names": "the identities come from the data",
}
METHOD_DATA_KEYS = ("augment", "batch_size", "eval_batch_size", "num_workers")
# model keys that matter to features_logreg (it builds the backbone only)
LOGREG_MODEL_KEYS = ("backbone_args", "input_size")
DEFAULT_LOGREG = {"C": 1.0, "max_iter": 1000}
# settings that change speed or logging, not results: they may differ when a sweep is resumed
RUNTIME_DATA_KEYS = ("root", "num_workers", "check_images", "eval_batch_size", "on_bad_image")
RUNTIME_TRAINER_KEYS = (
    "accelerator", "devices", "strategy", "num_nodes", "enable_progress_bar", "enable_model_summary",
    "log_every_n_steps", "profiler", "benchmark", "barebones", "enable_autolog_hparams", "model_registry",
)
# what a sweep cell's Trainer gets unless the config says otherwise
CELL_TRAINER_DEFAULTS = {"enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}


def _parameters(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "args", "kwargs")]


def data_parameters() -> list[str]:
    from ..data import FaceDataModule

    return _parameters(FaceDataModule.__init__)


def model_parameters() -> list[str]:
    from ..module import FaceClassifier

    return _parameters(FaceClassifier.__init__)


def trainer_parameters() -> list[str]:
    import lightning as L

    return _parameters(L.Trainer.__init__)


def logreg_parameters() -> list[str]:
    from sklearn.linear_model import LogisticRegression

    return sorted(LogisticRegression().get_params())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "method"


def _plain(value: Any) -> Any:
    """JSON-comparable copy (tuples -> lists, paths -> strings)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


@dataclass(frozen=True)
class MethodSpec:
    """One line of the comparison: a strategy applied to a backbone, with its settings resolved.

    ``model`` holds the FaceClassifier arguments (shared ones merged, ``freeze`` set by the
    strategy), ``trainer`` the Trainer arguments, ``data`` loader overrides, ``logreg`` the
    LogisticRegression arguments of ``features_logreg``.
    """

    name: str
    strategy: str
    backbone: str
    weights: str | None = None
    weights_path: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    logreg: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_lightning(self) -> bool:
        return self.strategy != "features_logreg"

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
                "trainer": trainer if self.uses_lightning else {},
                "data": merged_data,
                "logreg": self.logreg,
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


# --- reading YAML and command-line overrides ---------------------------------------------------
def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"sweep config {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read sweep config {path}: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"sweep config {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"sweep config {path} must be a mapping of keys (data, trainer, methods ...), got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of mappings; lists and scalars of ``extra`` replace those of ``base``."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: ``1`` -> int, ``[50, all]`` -> list, ``null`` -> None."""
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def apply_override(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``config[a][b][c] = value`` for ``dotted="a.b.c"``; integers index lists (``methods.0.model.lr``)."""
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"bad option --{dotted}: expected --key or --section.key (e.g. --data.root PATH)")
    node: Any = config
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where)]
        elif isinstance(node, dict):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"--{dotted}: {'.'.join(parts[:i]) or 'the config'} is not a section")
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--{dotted}: {where} is a value ({node!r}), not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, dotted)] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--{where}: expected an index 0..{len(node) - 1} of the list")
    return int(part)


def parse_overrides(args: Sequence[str]) -> list[tuple[str, Any]]:
    """``["--data.root", "x", "--seeds=[0,1]"]`` -> ``[("data.root", "x"), ("seeds", [0, 1])]``."""
    pairs: list[tuple[str, Any]] = []
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}; options look like --data.root PATH or --trainer.max_epochs=5")
        key, eq, text = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
                raise ConfigError(f"option --{key} needs a value")
            text = args[i + 1]
            i += 1
        pairs.append((key, parse_value(text)))
        i += 1
    return pairs


# --- validation ----------------------------------------------------------------------------------
def _unknown(where: str, keys: Iterable[str], known: Iterable[str]) -> None:
    bad = [k for k in keys if k not in known]
    if bad:
        label = f"{where}.{bad[0]}" if where else bad[0]
        raise ConfigError(f"unknown key {label!r}; {where or 'the sweep config'} accepts: {', '.join(sorted(known))}")


def _managed(where: str, keys: Iterable[str], managed: Mapping[str, str]) -> None:
    for key in keys:
        if key in managed:
            raise ConfigError(f"{where}.{key} cannot be set in a sweep: {managed[key]}")


def _section(raw: Mapping[str, Any], key: str, where: str | None = None) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where or key} must be a mapping of keys, got {value!r}")
    return dict(value)


def _check_train_samples(value: Any) -> list[int | str]:
    if value is None:
        value = ["all"]
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"train_samples must be a list of positive integers or 'all', got {value!r}")
    if not value:
        raise ConfigError("train_samples is empty: the grid has no training-set size (e.g. [50, 100, all])")
    out: list[int | str] = []
    for i, n in enumerate(value):
        if n == "all" or (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            if n not in out:
                out.append(n)
        else:
            raise ConfigError(f"train_samples[{i}]: must be a positive integer or 'all', got {n!r}")
    return out


def _check_seeds(value: Any) -> list[int]:
    if value is None:
        value = [0]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"seeds must be a list of non-negative integers, got {value!r}")
    if not value:
        raise ConfigError("seeds is empty: the grid has no seed (e.g. [0])")
    out: list[int] = []
    for i, s in enumerate(value):
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ConfigError(f"seeds[{i}]: must be a non-negative integer, got {s!r}")
        if s not in out:
            out.append(s)
    return out


def _check_method(
    i: int, raw: Any, shared_model: dict[str, Any], shared_trainer: dict[str, Any], backbones: list[str]
) -> MethodSpec:
    where = f"methods[{i}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping (strategy, backbone, ...), got {raw!r}")
    _unknown(where, raw, METHOD_KEYS)
    strategy = raw.get("strategy")
    if strategy is None:
        raise ConfigError(f"{where}.strategy is missing; known: {', '.join(STRATEGIES)}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"{where}.strategy: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    backbone = raw.get("backbone")
    if not isinstance(backbone, str) or not backbone:
        raise ConfigError(f"{where}.backbone is missing; known: {', '.join(backbones)}")
    if backbone not in backbones:
        raise ConfigError(f"{where}.backbone: unknown backbone {backbone!r}; known: {', '.join(backbones)}")
    weights, weights_path = raw.get("weights"), raw.get("weights_path")
    for key, value in (("weights", weights), ("weights_path", weights_path)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string or null, got {value!r}")
    if strategy == "scratch" and (weights or weights_path):
        raise ConfigError(
            f"{where}: strategy scratch starts from random weights; remove weights/weights_path "
            f"(got {weights or weights_path!r}) or use finetune"
        )

    own_model = _section(raw, "model", f"{where}.model")
    own_trainer = _section(raw, "trainer", f"{where}.trainer")
    own_data = _section(raw, "data", f"{where}.data")
    logreg = _section(raw, "logreg", f"{where}.logreg")
    _unknown(f"{where}.model", own_model, model_parameters())
    _managed(f"{where}.model", own_model, _MANAGED_MODEL_KEYS)
    _unknown(f"{where}.data", own_data, METHOD_DATA_KEYS)

    if strategy == "features_logreg":
        extra = [k for k in own_model if k not in LOGREG_MODEL_KEYS]
        if extra:
            raise ConfigError(
                f"{where}.model.{extra[0]}: features_logreg trains no Lightning model; it uses model "
                f"{', '.join(LOGREG_MODEL_KEYS)} only (tune logreg: instead, e.g. logreg: {{C: 0.5}})"
            )
        if own_trainer:
            raise ConfigError(f"{where}.trainer: features_logreg trains no Lightning model; tune logreg: instead")
        _unknown(f"{where}.logreg", logreg, logreg_parameters())
        model = {k: v for k, v in {**shared_model, **own_model}.items() if k in LOGREG_MODEL_KEYS}
        model["freeze"] = "all"
        logreg = {**DEFAULT_LOGREG, **logreg}
        trainer: dict[str, Any] = {}
    else:
        if logreg:
            raise ConfigError(f"{where}.logreg applies to strategy features_logreg only (this is {strategy})")
        _unknown(f"{where}.trainer", own_trainer, trainer_parameters())
        _managed(f"{where}.trainer", own_trainer, _MANAGED_TRAINER_KEYS)
        model = {**shared_model, **own_model}
        fixed = {"scratch": "none", "linear_probe": "all"}.get(strategy)
        if fixed is not None:
            if "freeze" in own_model and own_model["freeze"] != fixed:
                raise ConfigError(
                    f"{where}.model.freeze: strategy {strategy} always uses freeze {fixed!r} "
                    f"(got {own_model['freeze']!r}); use finetune for partial freezing"
                )
            model["freeze"] = fixed
        else:  # finetune
            model.setdefault("freeze", DEFAULT_FINETUNE_FREEZE)
            if model["freeze"] == "all":
                raise ConfigError(f"{where}.model.freeze: 'all' freezes every stage; that is strategy linear_probe")
        trainer = {**CELL_TRAINER_DEFAULTS, **shared_trainer, **own_trainer}

    name = raw.get("name") or f"{strategy}/{backbone}"
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string, got {name!r}")
    return MethodSpec(
        name=name,
        strategy=strategy,
        backbone=backbone,
        weights=weights,
        weights_path=weights_path,
        model=model,
        trainer=trainer,
        data=own_data,
        logreg=logreg,
    )


def validate_sweep_config(raw: Mapping[str, Any], *, default_name: str = "sweep", sources: Sequence[str] = ()) -> SweepConfig:
    """Check every key of a sweep mapping and resolve the methods (nothing is built or run)."""
    from ..models import list_backbones

    if not isinstance(raw, Mapping):
        raise ConfigError(f"a sweep config must be a mapping, got {type(raw).__name__}")
    _unknown("", raw, TOP_LEVEL_KEYS)
    data = _section(raw, "data")
    trainer = _section(raw, "trainer")
    model = _section(raw, "model")
    _unknown("data", data, data_parameters())
    _managed("data", data, _MANAGED_DATA_KEYS)
    _unknown("trainer", trainer, trainer_parameters())
    _managed("trainer", trainer, _MANAGED_TRAINER_KEYS)
    _unknown("model", model, model_parameters())
    _managed("model", model, {**_MANAGED_MODEL_KEYS, "freeze": "each method's strategy sets it (finetune: methods[i].model.freeze)"})

    train_samples = _check_train_samples(raw.get("train_samples"))
    seeds = _check_seeds(raw.get("seeds"))
    methods_raw = raw.get("methods")
    if methods_raw is None or methods_raw == []:
        raise ConfigError("methods is empty: the grid has no method (e.g. - {strategy: scratch, backbone: scratch_cnn})")
    if not isinstance(methods_raw, list):
        raise ConfigError(f"methods must be a list of methods, got {methods_raw!r}")
    backbones = list_backbones()
    methods = [_check_method(i, m, model, trainer, backbones) for i, m in enumerate(methods_raw)]
    seen: dict[str, int] = {}
    for i, m in enumerate(methods):
        if m.name in seen:
            raise ConfigError(
                f"methods[{i}] and methods[{seen[m.name]}] are both called {m.name!r}; give one a name: "
            )
        seen[m.name] = i

    name = raw.get("name") or default_name
    if not isinstance(name, str):
        raise ConfigError(f"name must be a string, got {name!r}")
    output_dir = raw.get("output_dir") or os.path.join("results", _slug(name))
    if not isinstance(output_dir, (str, os.PathLike)):
        raise ConfigError(f"output_dir must be a path, got {output_dir!r}")
    cache_dir = raw.get("feature_cache_dir") or os.path.join(output_dir, "features")
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise ConfigError(f"feature_cache_dir must be a path, got {cache_dir!r}")
    checkpoints = raw.get("checkpoints", "best")
    if checkpoints not in CHECKPOINT_POLICIES:
        raise ConfigError(f"checkpoints: unknown choice {checkpoints!r}; known: {', '.join(CHECKPOINT_POLICIES)}")
    num_threads = raw.get("num_threads")
    if num_threads is not None and (not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1):
        raise ConfigError(f"num_threads must be a positive integer or null, got {num_threads!r}")
    return SweepConfig(
        name=name,
        output_dir=Path(output_dir),
        data=data,
        trainer=trainer,
        train_samples=train_samples,
        seeds=seeds,
        methods=methods,
        feature_cache_dir=Path(cache_dir),
        checkpoints=checkpoints,
        num_threads=num_threads,
        sources=list(sources),
        method_order=[m.name for m in methods],
    )


def load_sweep_config(
    config: str | os.PathLike | Mapping[str, Any] | Sequence[str | os.PathLike],
    overrides: Sequence[str] | Sequence[tuple[str, Any]] = (),
) -> SweepConfig:
    """Read YAML file(s) (later ones merged over earlier ones), apply overrides, validate.

    ``overrides`` are command-line style (``["--data.root", "x"]``) or ``(dotted_key, value)`` pairs.

    >>> cfg = load_sweep_config("configs/experiments/demo.yaml", ["--trainer.max_epochs", "1"])  # doctest: +SKIP
    """
    if isinstance(config, Mapping):
        raw, sources, default_name = copy.deepcopy(dict(config)), [], "sweep"
    else:
        paths = [config] if isinstance(config, (str, os.PathLike)) else list(config)
        if not paths:
            raise ConfigError("no sweep config given (use --config configs/experiments/<name>.yaml)")
        raw = {}
        for path in paths:
            raw = merge(raw, read_yaml(path))
        sources = [str(p) for p in paths]
        default_name = Path(paths[-1]).stem
    pairs = parse_overrides(overrides) if overrides and isinstance(next(iter(overrides)), str) else list(overrides)
    for key, value in pairs:
        apply_override(raw, key, value)
    return validate_sweep_config(raw, default_name=default_name, sources=sources)


__all__ = [
    "STRATEGIES",
    "MethodSpec",
    "SweepConfig",
    "apply_override",
    "load_sweep_config",
    "parse_overrides",
    "validate_sweep_config",
]
