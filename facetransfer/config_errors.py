"""Configuration mistakes as one line: the file, the key, the value given and what is allowed.

jsonargparse reports a bad option with the whole usage text (about 100 lines) above the error,
and a YAML syntax error without the file's name. ``facetransfer fit``, ``facetransfer sweep`` and the
tool commands turn them into one :class:`~facetransfer.errors.ConfigError`::

    >>> import argparse
    >>> str(config_error(argparse.ArgumentError(None, 'Parser key "model.lr":\\n  Expected a <class \\'float\\'>. Got value: fast')))
    "model.lr: 'fast' is not a number"
    >>> check_config_files(["--config", "no_such.yaml"])
    Traceback (most recent call last):
    ...
    facetransfer.errors.ConfigError: config file no_such.yaml does not exist
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import yaml
from jsonargparse.typing import restricted_number_type

from .errors import ConfigError

#: number ranges that the command line and the Python checks (:func:`check_ranges`) share
FractionUpToOne = restricted_number_type("FractionUpToOne", float, [(">", 0), ("<=", 1)])  # (0, 1]
UnitFraction = restricted_number_type("UnitFraction", float, [(">=", 0), ("<", 1)])  # [0, 1)
CosineSimilarity = restricted_number_type("CosineSimilarity", float, [(">=", -1), ("<=", 1)])  # [-1, 1]

# how jsonargparse names a type -> what a user reads
_TYPE_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false", "NoneType": "null", "str": "a string",
               "dict": "a mapping", "list": "a list", "tuple": "a list"}


def _suggest(key: str, known: Sequence[str], group: str = "", options: bool = False) -> str:
    """``; did you mean 'group.key'?`` (``--key`` for ``options``) naming the known key closest to ``key``."""
    close = difflib.get_close_matches(key, list(known), n=1)
    if not close:
        return ""
    return f"; did you mean --{close[0]}?" if options else f"; did you mean '{group + '.' if group else ''}{close[0]}'?"


def _allowed(text: str) -> list[str]:
    """The accepted types in a jsonargparse message, in words (``a number``, ``one of adam, sgd``)."""
    words: list[str] = []
    for expected in re.findall(r"Expected a (.+?)(?:\. Got value:|$)", text, re.M):
        literal = re.match(r"typing\.Literal\[(.*)\]$", expected.strip())
        if literal:
            words.append("one of " + ", ".join(c.strip().strip("'\"") for c in literal.group(1).split(",")))
            continue
        name = re.match(r"<class '([\w.]+)'>$", expected.strip())
        word = _TYPE_WORDS.get(name.group(1).rsplit(".", 1)[-1]) if name else None
        words.append(word or expected.strip())
    return list(dict.fromkeys(words))


def _bounds(restriction: str) -> str:
    """jsonargparse's restriction in words: ``v>0 and v<=1`` -> ``in (0, 1]``, ``v>0`` -> ``> 0``."""
    limits = re.findall(r"v([<>=!]=?)([^\s]+)", restriction)
    low = next(((op, v) for op, v in limits if op.startswith(">")), None)
    high = next(((op, v) for op, v in limits if op.startswith("<")), None)
    if low and high and len(limits) == 2:
        return f"in {'[' if low[0] == '>=' else '('}{low[1]}, {high[1]}{']' if high[0] == '<=' else ')'}"
    return " and ".join(f"{op} {value}" for op, value in limits)


def _unknown_key(text: str) -> str | None:
    """The dotted key of jsonargparse's "Group 'model' / Subcommand 'fit' does not accept option 'x'"."""
    found = re.search(r"(?:Group '([^']+)'|Subcommand '[^']+') does not accept option '([^']+)'", text)
    return ".".join(part for part in found.groups() if part) if found else None


def config_error(
    err: Exception | str, where: str = "", known: Mapping[str, Sequence[str]] | None = None, source: str | None = None,
    options: bool = False,
) -> ConfigError:
    """A jsonargparse error as one :class:`ConfigError` line, prefixed with ``where``.

    ``known``: the accepted keys per group (``""`` for the top level), for a "did you mean" hint;
    ``source``: the config file the bad value came from, named in the message; ``options``: name keys
    as command-line options (``--face_crop``), as the tool commands take them.

    >>> str(config_error('Parser key "far":\\n  Not of type OpenUnitInterval: 1 does not conform to restriction '
    ...                  'v>0 and v<1', options=True))
    '--far must be in (0, 1), got 1'
    """
    text = str(err).strip()
    known = known or {}

    def done(message: str) -> ConfigError:
        prefix = ": ".join(p for p in (where, source) if p)
        return ConfigError(f"{prefix}: {message}" if prefix else message)

    dotted = _unknown_key(text)
    if dotted:
        name, _, key = dotted.rpartition(".")
        return done(f"unknown key '{dotted}'{_suggest(key, known.get(name, ()), name)}")
    option = re.search(r"unrecognized arguments: --([\w.]+)", text) or re.search(r"Option '([^']+)' is not accepted", text)
    if option:
        name, _, key = option.group(1).rpartition(".")
        shown = f"option --{option.group(1)}" if text.startswith("unrecognized") else f"key '{option.group(1)}'"
        return done(f"unknown {shown}{_suggest(key, known.get(name, ()), name, options)}")
    missing = re.search(r"File does not exist: '([^']+)'", text)
    if missing:
        return done(f"config file {missing.group(1)} does not exist")
    key = re.search(r'Parser key "([^"]+)"', text)
    name = (f"--{key.group(1).rpartition('.')[2]}" if options else key.group(1)) if key else ""
    given = re.search(r"Given value: (.*)$", text, re.M) or re.search(r"Got value: (.*)$", text, re.M)
    if key and given and "train_samples" in key.group(1) and "Union subtypes" in text:
        return done(f"{name}: {given.group(1).strip()} is not a positive integer or 'all'")
    bounds = re.search(r"Not of type \w+: (.*?) ?does not conform to restriction (.+)$", text, re.M)
    if key and bounds:
        value, allowed = (given.group(1) if given else bounds.group(1)).strip(), _bounds(bounds.group(2))
        return done(f"{name} must be {allowed}, got {value}")
    number = re.search(r"Not of type \w+: (invalid literal for int|could not convert string to float).*: (.*)$",
                       text, re.M)
    if key and number:
        value = repr(given.group(1).strip()) if given else number.group(2)
        return done(f"{name}: {value} is not {'an integer' if 'int' in number.group(1) else 'a number'}")
    allowed = _allowed(text)
    if key and given and allowed:
        return done(f"{name}: {given.group(1).strip()!r} is not {' or '.join(allowed)}")
    if key:
        lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
        return done(f"{name}: " + "; ".join(lines[:2]))
    return done(" ".join(ln.strip() for ln in text.splitlines() if ln.strip()))


def config_file_args(argv: Sequence[str]) -> list[str]:
    """The values of ``--config FILE`` / ``--config=FILE`` / ``-c FILE`` in a command line."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.partition("=")[2])
    return files


def _looks_like_a_path(value: str) -> bool:
    """``runs/a.yaml`` rather than inline YAML such as ``{model: {lr: 0.1}}``."""
    return bool(re.fullmatch(r"[^\s{}\[\],]+", value)) and ": " not in value


def check_config_files(argv: Sequence[str]) -> list[str]:
    """Every ``--config`` file of ``argv`` exists and is valid YAML; else one :class:`ConfigError` naming
    the file (and the line and column of a syntax error). Returns the files."""
    files = []
    for value in config_file_args(argv):
        if os.path.isdir(value):
            raise ConfigError(f"config file {value} is a folder; give a YAML file")
        if not os.path.isfile(value):
            if _looks_like_a_path(value):
                raise ConfigError(f"config file {value} does not exist")
            continue  # an inline YAML string: jsonargparse checks it
        try:
            with open(value, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
            raise ConfigError(f"config file {value} is not valid YAML: {where}{problem}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {value} cannot be read: {getattr(err, 'strerror', None) or err}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {value} must hold a mapping of keys (such as 'model:'), not a "
                              f"{type(data).__name__}")
        files.append(value)
    return files


_MISSING = object()


def file_setting(key: str, files: Sequence[str], sections: Sequence[str] = ()) -> str | None:
    """The last of ``files`` that sets the dotted ``key`` (also under one of ``sections``, e.g. ``fit``)."""
    for path in reversed(files):
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        for root in [data, *((data or {}).get(s) for s in sections if isinstance(data, dict))]:
            node: Any = root
            for part in key.split("."):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if node is not _MISSING:
                return path
    return None


def located_config_error(err: Exception | str, argv: Sequence[str], known: Mapping[str, Sequence[str]] | None = None,
                         sections: Sequence[str] = (), options: bool = False) -> ConfigError:
    """:func:`config_error` naming the ``--config`` file that set the bad key (when the command line did not)."""
    key = re.search(r'Parser key "([^"]+)"', str(err))
    dotted = key.group(1) if key else _unknown_key(str(err))
    source = None
    if dotted and not any(a == f"--{dotted}" or a.startswith(f"--{dotted}=") for a in argv):  # not given inline
        source = file_setting(dotted, config_file_args(argv), sections)
    return config_error(err, known=known, source=source, options=options)


class ParserError(ConfigError):
    """A jsonargparse error, condensed to one line; ``raw`` keeps jsonargparse's message."""

    def __init__(self, raw: str, known: Mapping[str, Sequence[str]] | None = None) -> None:
        self.raw = raw
        self.known = dict(known or {})
        super().__init__(str(config_error(raw, known=self.known)))


def check_ranges(values: Mapping[str, Any], allowed: Mapping[str, Any], prefix: str = "") -> None:
    """Refuse the first of ``values`` outside its range as jsonargparse refuses a typed option: ``allowed`` maps a
    name to a restricted number type (``jsonargparse.typing.PositiveFloat``, ``restricted_number_type(...)``); None
    passes. For options whose type belongs to another library (Lightning's Trainer), and for Python callers.

    >>> from jsonargparse.typing import PositiveFloat
    >>> check_ranges({"lr": -1.0}, {"lr": PositiveFloat}, prefix="model.")
    Traceback (most recent call last):
    ...
    facetransfer.config_errors.ParserError: model.lr must be > 0, got -1.0
    """
    for name, kind in allowed.items():
        if values.get(name) is not None:
            try:
                kind(values[name])
            except (TypeError, ValueError) as err:
                raise ParserError(f'Parser key "{prefix}{name}":\n  Not of type {kind.__name__}: {err}') from None


def known_keys(parser: Any) -> dict[str, list[str]]:
    """The keys a jsonargparse parser accepts per group (``""``: the top level), for "did you mean";
    empty when they cannot be listed."""
    try:
        keys = list(parser.get_defaults().keys())
    except Exception:  # a parser with required subcommands has no defaults to list
        return {}
    known: dict[str, list[str]] = {}
    for key in keys:
        group, _, name = key.rpartition(".")
        known.setdefault(group, []).append(name)
    return known


class OneLineErrors:
    """For a jsonargparse parser class: an error raises a :class:`ParserError` (one line) instead of printing
    the usage text and exiting."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        parser = getattr(ex, "subcommand_parser", None) or self
        raise ParserError(str(ex) if ex is not None else message, known_keys(parser)) from None


__all__ = [
    "CosineSimilarity", "FractionUpToOne", "OneLineErrors", "ParserError", "UnitFraction", "check_config_files",
    "check_ranges", "config_error", "config_file_args", "file_setting", "known_keys", "located_config_error",
]
