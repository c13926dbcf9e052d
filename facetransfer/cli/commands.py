"""The commands of ``facetransfer``: the training commands and the tool commands, imported when run.

A tool command is a function of its argv returning an exit code, registered under its name
(:func:`register_command`, or the ``facetransfer.commands`` entry-point group). The built-ins are
``"module:function"`` references, imported only when the command runs::

    >>> "verify" in TOOL_COMMANDS
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..registry import Registry

Command = Callable[[Sequence[str]], int]
TRAINING_COMMANDS = ("fit", "validate", "test", "predict")
TOOL_COMMANDS: Registry[Command] = Registry("command", "facetransfer.commands", ordered=True)
register_command = TOOL_COMMANDS.register
tool_command = TOOL_COMMANDS.get
for _name, _function in {
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
    "pairs": "facetransfer.cli.pairs:pairs_command",
}.items():
    register_command(_name)(_function)

DESCRIPTION = """Face recognition by transfer learning (PyTorch Lightning).

training commands (LightningCLI): fit, validate, test, predict
tool commands: weights (import/list offline weights), backbones (list models), strategies (list strategies),
               verify (LFW pair verification), gallery (enroll people, identify photos, reject strangers),
               export (ONNX / TorchScript), sweep (the paper's grid of strategies x backbones x training
               sizes x seeds), report (a sweep's table and plot), align (detect and align the faces of
               a folder of photos), data (download LFW from its project site), pairs (a pairs file in
               LFW's format for any folder of people)
Run 'facetransfer COMMAND --help' for each."""

__all__ = ["DESCRIPTION", "TOOL_COMMANDS", "TRAINING_COMMANDS", "Command", "register_command", "tool_command"]
