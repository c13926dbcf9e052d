"""Strategies: the ways of learning a face classifier that a sweep compares, as registered objects.

A :class:`Strategy` says what it freezes, how it trains (a Lightning fit, or a solver on frozen features),
which sections a method of it may hold (``model:``, ``trainer:``, ``data:``, its own such as ``logreg:``),
its recipe (``recipes/<name>.yaml`` beside its module) and how one cell of the grid runs. Other packages
add strategies through the ``facetransfer.strategies`` entry-point group (docs/plugins.md)::

    >>> from facetransfer.strategies import get_strategy, list_strategies
    >>> get_strategy(list_strategies()[0]).trains
    'lightning'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
import yaml

from ..errors import ConfigError
from ..registry import Registry
from .sections import Section, dotted, plain, resolve_sections, slug

ENTRY_POINT_GROUP = "facetransfer.strategies"
CellKey = tuple[str, int, int]  # (method name, train_samples, seed); a people-axis cell's train_samples: its images

# settings that change speed or logging, not results: they may differ when a sweep is resumed
RUNTIME_DATA_KEYS = ("root", "num_workers", "check_images", "eval_batch_size", "on_bad_image")
RUNTIME_TRAINER_KEYS = (
    "accelerator", "devices", "strategy", "num_nodes", "enable_progress_bar", "enable_model_summary",
    "log_every_n_steps", "profiler", "benchmark", "barebones", "enable_autolog_hparams", "model_registry",
)


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
        return get_strategy(self.strategy)

    @property
    def slug(self) -> str:
        """The method's name as a folder name."""
        return slug(self.name)

    @property
    def weights_label(self) -> str:
        return self.weights or (os.path.basename(self.weights_path) if self.weights_path else "none")

    def classifier_args(self) -> dict[str, Any]:
        """Keyword arguments of :class:`FaceClassifier` for this method."""
        return {"backbone": self.backbone, "weights": self.weights, "weights_path": self.weights_path, **self.model}

    def fingerprint(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """What determines this method's results (runtime-only settings left out)."""
        merged_data = {k: v for k, v in {**data, **self.data}.items() if k not in RUNTIME_DATA_KEYS}
        trainer = {k: v for k, v in self.trainer.items() if k not in RUNTIME_TRAINER_KEYS}
        return plain({"strategy": self.strategy, "backbone": self.backbone, "weights": self.weights,
                      "weights_path": self.weights_path, "model": self.model, "trainer": trainer, "data": merged_data,
                      **self.options})


@dataclass(frozen=True)
class Cell:
    """One run of the grid: ``method`` trained on the first ``train_samples`` pool images of ``seed``'s split, or,
    on a grid over people (``train_identities``), on the pool images of the split's first ``train_identities``
    training people (``train_samples`` of them)."""

    method: MethodSpec
    train_samples: int
    seed: int
    pool_size: int
    train_identities: int | None = None

    @property
    def key(self) -> CellKey:
        return (self.method.name, self.train_samples, self.seed)

    @property
    def size(self) -> int:
        """Its value of the grid's size axis: training people, or training images."""
        return self.train_samples if self.train_identities is None else self.train_identities

    @property
    def label(self) -> str:
        every = " (all)" if self.train_samples == self.pool_size else ""
        size = f"N={self.train_samples}" if self.train_identities is None else f"K={self.train_identities} people"
        return f"{self.method.name} {size}{every} seed={self.seed}"

    @property
    def folder(self) -> str:
        """Sub-folder of the method's log folder for this cell."""
        size = f"n{self.train_samples}" if self.train_identities is None else f"people{self.train_identities}"
        return f"{size}-seed{self.seed}"


@dataclass
class CellResult:
    """What a strategy returns for one cell: test metrics (fractions; None where not measured: classification
    of people never trained on, or verification of a closed-set test), training time, device, and the trained
    model, whose embedding the sweep verifies its ``verify:`` pairs file with.

    ``verify_*``: pair verification of the test people (open-set splits): accuracy, ROC AUC, TAR at FAR 1e-3.
    """

    top1: float | None
    top5: float | None
    macro_f1: float | None
    train_seconds: float
    device: str
    verify_acc: float | None = None
    verify_auc: float | None = None
    verify_tar: float | None = None
    model: Any = field(default=None, repr=False)

    @classmethod
    def from_logged(cls, metrics: Mapping[str, float], **rest: Any) -> CellResult:
        """From test metrics as :class:`~facetransfer.FaceClassifier` logs them: ``test/acc``, ``test/acc_top5``,
        ``test/f1_macro``, or on an open-set split ``test/verify_acc``, ``test/verify_auc``, ``test/verify_tar@...``.

        >>> CellResult.from_logged({"test/verify_acc": 0.9}, train_seconds=1.0, device="cpu").top1 is None
        True
        """
        tar = next((value for key, value in metrics.items() if key.startswith("test/verify_tar")), None)
        return cls(metrics.get("test/acc"), metrics.get("test/acc_top5"), metrics.get("test/f1_macro"),
                   verify_acc=metrics.get("test/verify_acc"), verify_auc=metrics.get("test/verify_auc"),
                   verify_tar=tar, **rest)


class CellContext(Protocol):
    """What a cell runs with (a sweep's :class:`~facetransfer.sweep.plan.SweepPlan`): the sweep's
    configuration (``config.data``, ``config.trainer``, ``config.checkpoints``), each cell's split, the
    frozen-feature store and the logs folder."""

    config: Any
    feature_store: Any
    logs_dir: Path
    notices: list[str]

    def cell_dir(self, cell: Cell) -> Path: ...

    def manifest(self, cell: Cell) -> Any: ...

    @property
    def feature_device(self) -> torch.device: ...

    @property
    def feature_autocast(self) -> torch.dtype | None: ...


class Strategy:
    """Base class of strategies; subclasses set the class attributes and implement :meth:`run`.

    Attributes:
        name: the ``strategy:`` value in a sweep config (and of ``facetransfer fit --strategy``).
        summary: one line for ``facetransfer strategies`` (default: the first line of the docstring).
        trains: ``lightning`` (a :class:`~facetransfer.FaceClassifier` fit) or ``solver`` (a
            solver on cached frozen features, seconds not epochs).
        freeze: the freeze policy it always uses (None: the method's ``model.freeze``,
            default ``default_freeze``).
        pretrained: False when it must start from random weights (no ``weights``).
        defaults: a plug-in's recipe written in Python, for a package without ``recipes/<name>.yaml``.
        sections: the mappings a method of this strategy may hold.
        min_train_samples: the smallest training set it can learn from.
        plot_style: matplotlib line style and marker of its lines in the report's plot.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    trains: ClassVar[Literal["lightning", "solver"]] = "lightning"
    freeze: ClassVar[str | None] = None
    default_freeze: ClassVar[str] = "none"
    pretrained: ClassVar[bool | None] = None
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    sections: ClassVar[tuple[Section, ...]] = ()
    min_train_samples: ClassVar[int] = 1
    plot_style: ClassVar[tuple[Any, str]] = ("-", "o")

    @property
    def recipe(self) -> dict[str, dict[str, Any]]:
        """The strategy's recipe per section: ``recipes/<name>.yaml`` beside the module that defines it."""
        module = sys.modules[type(self).__module__]
        package = module.__name__ if hasattr(module, "__path__") else module.__package__
        path = resources.files(package) / "recipes" / f"{self.name}.yaml"
        if not path.is_file():
            return {key: dict(values) for key, values in self.defaults.items()}
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(recipe, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of sections (model:, trainer: ...), got {recipe!r}")
        return recipe

    def settings(self, own: Mapping[str, Any] | None = None, shared: Sequence[Mapping[str, Any]] = (),
                 where: str = "") -> dict[str, dict[str, Any]]:
        """The sections of a method of this strategy: the ``shared`` layers, its recipe, then ``own``
        (a later one's keys win), with ``model.freeze`` set by :meth:`check_freeze`'s rules.

        >>> from facetransfer.strategies import get_strategy, list_strategies
        >>> get_strategy(list_strategies()[0]).settings()["model"]
        {'freeze': 'none'}
        """
        own = own or {}
        resolved = resolve_sections(self.sections, [*shared, self.recipe], own, where)
        own_freeze = (own.get("model") or {}).get("freeze")
        if own_freeze is not None:
            self.check_freeze(own_freeze, where)
        model = resolved.setdefault("model", {})
        model["freeze"] = self.freeze or model.get("freeze", self.default_freeze)
        return resolved

    def check_freeze(self, policy: str, where: str) -> None:
        """Refuse a ``model.freeze`` this strategy cannot train with (override to add rules)."""
        if self.freeze is not None and policy != self.freeze:
            raise ConfigError(
                f"{dotted(where, 'model.freeze')}: strategy {self.name} always uses freeze {self.freeze!r} (got {policy!r})"
            )

    def check_weights(self, weights: str | None, where: str) -> None:
        """Refuse pretrained weights for a strategy that starts from random weights."""
        if self.pretrained is False and weights:
            raise ConfigError(
                f"{where + ': ' if where else ''}strategy {self.name} starts from random weights; remove "
                f"weights/weights_path (got {weights!r}), or use a strategy that starts from pretrained weights"
            )

    def check(self, method: MethodSpec, config: Any) -> None:
        """Build what a cell of ``method`` needs once, so bad options fail before the first cell
        (``config``: the sweep's configuration; its ``data`` section is what every cell loads)."""

    def callbacks(self, method: MethodSpec) -> list:
        """Callbacks of a Lightning fit of ``method`` besides facetransfer's defaults."""
        return []

    def run(self, cell: Cell, ctx: CellContext) -> CellResult:
        """Train and test one cell; return its metrics."""
        raise NotImplementedError


#: strategies by name, in registration order (the order ``facetransfer strategies`` lists them in);
#: ``get_strategy(name)`` gives an instance, whose ``name`` is its key
STRATEGIES: Registry[Strategy] = Registry("strategy", ENTRY_POINT_GROUP, Strategy, ordered=True, named=True)
register_strategy = STRATEGIES.register
list_strategies = STRATEGIES.names
get_strategy = STRATEGIES.build


__all__ = [
    "ENTRY_POINT_GROUP", "STRATEGIES", "Cell", "CellContext", "CellKey", "CellResult", "MethodSpec", "Section",
    "Strategy", "get_strategy", "list_strategies", "register_strategy",
]
