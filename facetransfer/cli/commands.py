"""The commands of ``facetransfer``: the training commands and the tool commands, imported when run.

    >>> "verify" in TOOL_COMMANDS
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

Command = Callable[[Sequence[str]], int]
TRAINING_COMMANDS = ("fit", "validate", "test", "predict")
# tool command -> "module:function" (imported when the command runs) or the function itself
TOOL_COMMANDS: dict[str, str | Command] = {
    "weights": "facetransfer.cli.registries:weights_command",
    "backbones": "facetransfer.cli.registries:backbones_command",
    "strategies": "facetransfer.cli.registries:strategies_command",
    "verify": "facetransfer.cli.verify:verify_command",
    "gallery": "facetransfer.cli.gallery:gallery_command",
    "export": "facetransfer.cli.export:export_command",
    "sweep": "facetransfer.cli.sweep:sweep_command",
    "report": "facetransfer.cli.sweep:report_command",
    "align": "facetransfer.cli.align:align_command",
    "data": "facetransfer.cli.data:data_command",
}

DESCRIPTION = """Face recognition by transfer learning (PyTorch Lightning).

training commands (LightningCLI): fit, validate, test, predict
tool commands: weights (import/list offline weights), backbones (list models), strategies (list strategies),
               verify (LFW pair verification), gallery (enroll people, identify photos, reject strangers),
               export (ONNX / TorchScript), sweep (the paper's grid of strategies x backbones x training
               sizes x seeds), report (a sweep's table and plot), align (detect and align the faces of
               a folder of photos), data (download LFW from its project site)
Run 'facetransfer COMMAND --help' for each."""


def register_command(name: str) -> Callable[[Command], Command]:
    """Add a tool command (``facetransfer NAME ...``) taking its argv and returning an exit code."""

    def wrapper(fn: Command) -> Command:
        TOOL_COMMANDS[name] = fn
        return fn

    return wrapper


def tool_command(name: str) -> Command:
    """The function of a tool command, imported on first use."""
    target = TOOL_COMMANDS[name]
    if callable(target):
        return target
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


__all__ = ["DESCRIPTION", "TOOL_COMMANDS", "TRAINING_COMMANDS", "Command", "register_command", "tool_command"]
