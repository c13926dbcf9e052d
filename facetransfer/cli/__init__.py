"""The ``facetransfer`` command: LightningCLI's fit/validate/test/predict plus the tool commands.

    >>> from facetransfer.cli import main
    >>> main(["backbones"])  # doctest: +SKIP
"""

from .commands import TOOL_COMMANDS, register_command, tool_command
from .main import main

__all__ = ["TOOL_COMMANDS", "main", "register_command", "tool_command"]
