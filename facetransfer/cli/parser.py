"""The argument parser of ``facetransfer fit/validate/test/predict``: one line per mistake, no usage text.

LightningCLI's parser (jsonargparse) prints about 100 lines of usage above a bad option's error.
:class:`OneLineErrorParser` raises the error as a :class:`ParserError` instead; the CLI names the
config file that set the key and adds where to read the accepted options::

    facetransfer: error: bad.yaml: model.lr: 'fast' is not a number; see 'facetransfer fit --help'

The tool commands parse the same way with :class:`~facetransfer.cli.options.ToolParser`, which needs no Lightning.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser

from ..config_errors import OneLineErrors, ParserError, known_keys
from .options import HelpFormatter


class OneLineErrorParser(OneLineErrors, LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are a :class:`ParserError` (one line), not usage text + exit."""


__all__ = ["HelpFormatter", "OneLineErrorParser", "ParserError", "known_keys"]
