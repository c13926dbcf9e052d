"""Strategies: the ways of learning a face classifier that a sweep compares, as registered objects.

A :class:`Strategy` says what it freezes, how it trains (a Lightning fit, or a solver on frozen
features), what each of its methods may set (``model:``, ``trainer:``, ``data:`` or its own
sections such as ``logreg:``) and how one cell of the grid runs. Built-ins register with
:func:`register_strategy`; other packages add theirs through the ``facetransfer.strategies``
entry-point group (the value is a :class:`Strategy` subclass)::

    # pyproject.toml of a plug-in package
    [project.entry-points."facetransfer.strategies"]
    knn = "my_package.knn:KNearestNeighbours"

    >>> from facetransfer.strategies import get_strategy, list_strategies
    >>> get_strategy(list_strategies()[0]).trains
    'lightning'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from ..errors import ConfigError, unknown_choice
from ..plugins import load_entry_points

if TYPE_CHECKING:  # the sweep imports the strategies, not the other way round
    from ..sweep.config import MethodSpec, SweepConfig
    from ..sweep.grid import Cell
    from ..sweep.runner import SweepContext

ENTRY_POINT_GROUP = "facetransfer.strategies"


@dataclass(frozen=True)
class Section:
    """A mapping a method of a strategy may hold (``model:``, ``logreg:`` ...), checked against a signature.

    Args:
        key: the section's name in a method.
        doc: what it configures (shown by ``facetransfer strategies``).
        target: returns the class or function whose keyword arguments the section accepts.
        only: accept just these of its arguments (None: all).
        managed: arguments the sweep sets itself, with what to do instead.
        preset: values the section starts from (a method's own values override them).
    """

    key: str
    doc: str
    target: Callable[[], Callable[..., Any]]
    only: tuple[str, ...] | None = None
    managed: Mapping[str, str] = field(default_factory=dict)
    preset: Mapping[str, Any] = field(default_factory=dict)

    def check(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``values`` typed and checked (unknown or managed keys, wrong types) -> the given values."""
        from ..sweep.config import parse_section

        for key in values:
            if key in self.managed:
                raise ConfigError(f"{where}.{key} cannot be set in a sweep: {self.managed[key]}")
            if self.only is not None and key not in self.only:
                raise ConfigError(f"{where}.{key}: this strategy's {self.key} accepts {', '.join(self.only)}")
        return parse_section(self.target(), {**self.preset, **values}, where, skip=set(self.managed))


@dataclass
class CellResult:
    """What a strategy returns for one cell: test metrics (fractions), training time, device."""

    top1: float
    top5: float
    macro_f1: float
    train_seconds: float
    device: str


class Strategy:
    """Base class of strategies; subclasses set the class attributes and implement :meth:`run`.

    Attributes:
        name: the ``strategy:`` value in a sweep config.
        summary: one line for ``facetransfer strategies``.
        trains: ``lightning`` (a :class:`~facetransfer.FaceClassifier` fit) or ``solver`` (a
            solver on cached frozen features, seconds not epochs).
        freeze: the freeze policy it always uses (None: the method's ``model.freeze``,
            default ``default_freeze``).
        pretrained: False when it must start from random weights (no ``weights``).
        defaults: the strategy's recipe per section (``{"model": {...}, "data": {...}}``): it overrides
            the sweep's shared sections, and a method's own sections override it.
        cell_defaults: settings per section below the shared ones (e.g. no progress bar per cell).
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
    cell_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    sections: ClassVar[tuple[Section, ...]] = ()
    min_train_samples: ClassVar[int] = 1
    plot_style: ClassVar[tuple[Any, str]] = ("-", "o")

    def check_freeze(self, policy: str, where: str) -> None:
        """Refuse a ``model.freeze`` this strategy cannot train with (override to add rules)."""
        if self.freeze is not None and policy != self.freeze:
            raise ConfigError(
                f"{where}.model.freeze: strategy {self.name} always uses freeze {self.freeze!r} (got {policy!r})"
            )

    def check(self, method: MethodSpec, config: SweepConfig) -> None:
        """Build what a cell of ``method`` needs once, so bad options fail before the first cell."""

    def run(self, cell: Cell, ctx: SweepContext) -> CellResult:
        """Train and test one cell; return its metrics."""
        raise NotImplementedError


_S = TypeVar("_S", bound=type[Strategy])
_STRATEGIES: dict[str, Strategy] = {}
_plugins_loaded = False


def register_strategy(cls: _S) -> _S:
    """Class decorator adding a :class:`Strategy` subclass to the registry under its ``name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} needs a class attribute name (the strategy: value in a sweep)")
    existing = _STRATEGIES.get(name)
    if existing is not None and type(existing) is not cls:
        raise ValueError(f"a strategy named {name!r} is already registered ({type(existing).__name__})")
    _STRATEGIES[name] = cls()
    return cls


def _plugin(name: str, cls: Any) -> Strategy:
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a facetransfer Strategy subclass")
    if getattr(cls, "name", None) != name:
        raise TypeError(f"its name is {getattr(cls, 'name', None)!r}, the entry point says {name!r}")
    return cls()


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        load_entry_points(ENTRY_POINT_GROUP, _STRATEGIES, _plugin)


def list_strategies() -> list[str]:
    """Names of all registered strategies, plug-ins included, in registration order."""
    _load_plugins()
    return list(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; a :class:`ConfigError` listing the known ones otherwise."""
    _load_plugins()
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise unknown_choice("strategy", name, _STRATEGIES) from None


__all__ = ["ENTRY_POINT_GROUP", "CellResult", "Section", "Strategy", "get_strategy", "list_strategies", "register_strategy"]
