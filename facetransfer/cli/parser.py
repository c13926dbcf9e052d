"""The argument parser of ``facetransfer fit/validate/test/predict``: one line per mistake, no usage text.

LightningCLI's parser (jsonargparse) prints about 100 lines of usage above a bad option's error.
:class:`OneLineErrorParser` raises the error as a :class:`ParserError` instead; the CLI names the
config file that set the key and adds where to read the accepted options::

    facetransfer: error: bad.yaml: model.lr: 'fast' is not a number; see 'facetransfer fit --help'
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser

from ..config_errors import config_error
from ..errors import ConfigError

GROUPS = ("model", "data", "trainer")


class ParserError(ConfigError):
    """A jsonargparse error, condensed to one line; ``raw`` keeps jsonargparse's message."""

    def __init__(self, raw: str, known: Mapping[str, Sequence[str]] | None = None) -> None:
        self.raw = raw
        self.known = dict(known or {})
        super().__init__(str(config_error(raw, known=self.known)))


def known_keys(parser: Any) -> dict[str, list[str]]:
    """The keys each group of ``parser`` accepts (for "did you mean"), empty when they cannot be listed."""
    try:
        defaults = parser.get_defaults()
        return {group: list(defaults[group].keys()) for group in GROUPS if group in defaults}
    except Exception:  # a parser with required subcommands has no defaults to list
        return {}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help (types, defaults; a ``%`` in a docstring is text, as in "40 % of its memory")
    under a description whose line breaks are kept."""


class OneLineErrorParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are a :class:`ParserError` (one line), not usage text + exit."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        parser = getattr(ex, "subcommand_parser", None) or self
        raise ParserError(str(ex) if ex is not None else message, known_keys(parser)) from None


__all__ = ["HelpFormatter", "OneLineErrorParser", "ParserError", "known_keys"]
