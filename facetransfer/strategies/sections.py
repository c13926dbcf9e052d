"""The sections of a method (``model:``, ``trainer:``, ``data:``, ``logreg:`` ...), each typed by the
signature it configures, and how a method's settings resolve.

One jsonargparse parser per strategy holds a group per section. A method's settings are a stack
of layers parsed onto one namespace, a later layer's keys over an earlier one's: the sweep's shared
sections, the strategy's recipe, the method's own sections::

    >>> def solver(C: float = 1.0, max_iter: int = 100): ...
    >>> sections = (Section("solver", "a solver's arguments", lambda: solver),)
    >>> resolve_sections(sections, [{"solver": {"C": "0.5", "max_iter": 10}}], {"solver": {"max_iter": 20}}, "methods[0]")
    {'solver': {'C': 0.5, 'max_iter': 20}}
"""

from __future__ import annotations

import argparse
import functools
import json
import pkgutil
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config_errors import check_ranges, config_error
from ..errors import ConfigError

# the keys a sweep sets itself, per section, with what to write instead
MANAGED_MODEL_KEYS = {
    "backbone": "set each method's backbone:",
    "weights": "set each method's weights:",
    "weights_path": "set each method's weights_path:",
    "class_names": "the identities come from the data",
    "open_set": "the data decides it (data.split_by: identity makes every cell open-set)",
    "eval_class_names": "the val/test people come from the data",
    "features": "the sweep's feature store serves frozen features",
}
MANAGED_TRAINER_KEYS = {
    "logger": "each cell logs to TensorBoard under <output_dir>/logs",
    "callbacks": "cells use facetransfer's default callbacks (best checkpoint by val/acc)",
    "default_root_dir": "cells write under <output_dir>/logs",
}
MANAGED_DATA_KEYS = {
    "train_samples": "set the top-level train_samples list",
    "train_identities": "set the top-level train_identities list",
    "seed": "set the top-level seeds list",
    "split_manifest": "a sweep builds its own split per seed",
    "predict_root": "a sweep does not predict",
    "preprocess": "each method's backbone decides the preprocessing (use model.input_size)",
    "features": "the sweep's feature store serves frozen features",
}
#: the shared model section of a sweep also leaves the freeze policy to each method's strategy
MANAGED_SHARED_MODEL_KEYS = {
    **MANAGED_MODEL_KEYS,
    "freeze": "each method's strategy sets it (where a strategy lets you choose: methods[i].model.freeze)",
}


def slug(text: str) -> str:
    """``text`` as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "method"


def dotted(where: str, key: str) -> str:
    """``methods[0]`` + ``model.freeze`` -> ``methods[0].model.freeze`` (``key`` alone without ``where``)."""
    return f"{where}.{key}" if where else key


def plain(value: Any) -> Any:
    """JSON-comparable copy (tuples -> lists, paths -> strings)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def imported(reference: str) -> Callable[[], Any]:
    """A :attr:`Section.target` (or ``ranges``) that imports ``"package.module:attribute"`` when called, so that
    reading a strategy imports neither Lightning nor scikit-learn."""
    return functools.partial(pkgutil.resolve_name, reference)


@dataclass(frozen=True, eq=False)  # one object per section (a module constant): compared and hashed by identity
class Section:
    """A mapping a method of a strategy may hold (``model:``, ``logreg:`` ...), checked against a signature.

    Args:
        key: the section's name in a method.
        doc: what it configures (shown by ``facetransfer strategies``).
        target: returns the class or function whose keyword arguments the section accepts.
        only: accept just these of its arguments (None: all).
        managed: arguments the sweep sets itself, with what to do instead.
        preset: values the section starts from when a method has it (its other layers override them).
        ranges: returns the allowed values of its numeric arguments (see :func:`~facetransfer.config_errors.check_ranges`).
    """

    key: str
    doc: str
    target: Callable[[], Callable[..., Any]]
    only: tuple[str, ...] | None = None
    managed: Mapping[str, str] = field(default_factory=dict)
    preset: Mapping[str, Any] = field(default_factory=dict)
    ranges: Callable[[], Mapping[str, Any]] = dict

    @property
    def optional(self) -> bool:
        """A section a method may leave out or turn off (``early_stopping: false``); model, trainer and
        data are always there."""
        return self.key not in ("model", "trainer", "data")

    def accepts(self, key: str) -> bool:
        return key not in self.managed and (self.only is None or key in self.only)

    def check_own(self, values: Any, where: str) -> None:
        """A method's own ``values``: a mapping without keys the sweep manages or the strategy leaves out."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where} must be a mapping of keys, got {values!r}")
        for key in values:
            if key in self.managed:
                raise ConfigError(f"{where}.{key} cannot be set in a sweep: {self.managed[key]}")
            if not self.accepts(key):
                raise ConfigError(f"{where}.{key}: this strategy's {self.key} accepts {', '.join(self.only or ())}")


@functools.cache
def sections_parser(sections: tuple[Section, ...]):
    """The parser of a strategy's sections: one group per section, built once (required arguments such
    as EarlyStopping's ``monitor`` are checked when the object is built, not per layer)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    for section in sections:
        target = section.target()
        add = parser.add_class_arguments if isinstance(target, type) else parser.add_function_arguments
        add(target, section.key, skip=set(section.managed), fail_untyped=False, sub_configs=True)
    for action in parser._actions:
        action.required = False
    return parser


def _section_error(err: Exception, where: str, parser: Any) -> ConfigError:
    """jsonargparse's error about one section, named as the method's: ``methods[0].model: unknown key 'lrr'``."""
    text = str(err)
    group = re.search(r"Group '(\w+)' does not accept option '([^']+)'", text)
    key = re.search(r'Parser key "(\w+)\.', text)
    if group is None and key is None:
        return config_error(err, where)
    section = group.group(1) if group else key.group(1)
    text = f"Option '{group.group(2)}' is not accepted" if group else text.replace(key.group(0), 'Parser key "')
    known = [a.dest.partition(".")[2] for a in parser._actions if a.dest.startswith(section + ".")]
    return config_error(text, f"{where}.{section}", {"": known})


def resolve_sections(
    sections: Sequence[Section], layers: Sequence[Mapping[str, Any]], own: Mapping[str, Any], where: str
) -> dict[str, dict[str, Any]]:
    """The sections of one method: ``layers`` (shared sections, then a recipe) and last the method's
    ``own`` sections, typed and merged key by key (a later layer wins); only keys some layer gives.

    A layer's sections that the strategy lacks are left out, and so are keys a section does not
    accept; the method's own sections must be valid (one :class:`ConfigError` naming ``where``).
    An optional section appears when a layer has it, starting from its ``preset``; ``key: false``
    (or null) in ``own`` turns it off.
    """
    by_key = {s.key: s for s in sections}
    off = {k for k, s in by_key.items() if s.optional and k in own and own[k] in (None, False)}
    for key, section in by_key.items():
        if key in own and key not in off:
            section.check_own(own[key] or {}, f"{where}.{key}")
    stack = [{k: {n: v for n, v in (values or {}).items() if by_key[k].accepts(n)}
              for k, values in layer.items() if k in by_key and k not in off} for layer in layers]
    stack.append({k: v or {} for k, v in own.items() if k in by_key and k not in off})
    present = {k for layer in stack for k in layer}
    stack.insert(0, {k: dict(by_key[k].preset) for k in present if by_key[k].preset})
    parser = sections_parser(tuple(sections))
    namespace = None
    for i, layer in enumerate(stack):
        try:
            namespace = parser.parse_object(layer, namespace=namespace, defaults=False)
        except (argparse.ArgumentError, TypeError, ValueError) as err:
            raise _section_error(err, where if i == len(stack) - 1 else f"{where} (its strategy's recipe)", parser) from None
    resolved = plain(namespace.as_dict())
    for key, section in by_key.items():
        check_ranges(resolved.get(key) or {}, section.ranges(), prefix=f"{where}.{key}.")
    return {k: resolved.get(k, {}) for k in by_key if not by_key[k].optional or k in present}


__all__ = ["MANAGED_DATA_KEYS", "MANAGED_MODEL_KEYS", "MANAGED_SHARED_MODEL_KEYS", "MANAGED_TRAINER_KEYS", "Section",
           "dotted", "imported", "plain", "resolve_sections", "sections_parser", "slug"]
