"""The ``facetransfer`` command: LightningCLI's fit/validate/test/predict plus the tool commands.

    >>> from facetransfer.cli import main
    >>> main(["backbones"])  # doctest: +SKIP
"""

from .main import TOOL_COMMANDS, main, register_command, tool_command

__all__ = ["TOOL_COMMANDS", "main", "register_command", "tool_command"]
