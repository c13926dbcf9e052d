"""The ``facetransfer`` command: LightningCLI's fit/validate/test/predict plus tool commands.

    facetransfer fit --config configs/linear_probe.yaml --data.dataset folder --data.root faces/
    facetransfer test --ckpt_path runs/.../last.ckpt
    facetransfer weights import mobilenet_v2-b0353104.pth
    facetransfer backbones
    facetransfer sweep --config configs/experiments/demo.yaml
    facetransfer report results/demo

Each command's module is imported only when that command runs, so the commands that do not train
(``--help``, ``backbones``, ``strategies``, ``weights``, ``report`` ...) start without loading
PyTorch Lightning. Bad input (unknown backbone, missing folder, corrupt image, a config mistake ...)
and filesystem faults (read-only folder, full disk ...) end with one ``facetransfer: error: ...`` line
and exit status 2, not a traceback (``FACETRANSFER_LOGLEVEL=DEBUG`` logs the traceback of a filesystem fault).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ._noise import silence_known_noise
from .errors import FaceTransferError
from .malloc_tuning import tune_malloc

Command = Callable[[Sequence[str]], int]
TRAINING_COMMANDS = ("fit", "validate", "test", "predict")
# tool command -> "module:function" (imported when the command runs) or the function itself
TOOL_COMMANDS: dict[str, str | Command] = {
    "weights": "facetransfer.commands:weights_command",
    "backbones": "facetransfer.commands:backbones_command",
    "strategies": "facetransfer.commands:strategies_command",
    "verify": "facetransfer.verification.command:verify_command",
    "gallery": "facetransfer.verification.gallery_command:gallery_command",
    "export": "facetransfer.export:export_command",
    "sweep": "facetransfer.sweep.cli:sweep_command",
    "report": "facetransfer.sweep.cli:report_command",
    "align": "facetransfer.detection.command:align_command",
    "data": "facetransfer.data.command:data_command",
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


def _configure_logging() -> None:
    """Log level from ``FACETRANSFER_LOGLEVEL`` (default WARNING)."""
    logging.basicConfig(level=os.environ.get("FACETRANSFER_LOGLEVEL", "WARNING"))


def _usage() -> str:
    return f"usage: facetransfer {{{','.join([*TRAINING_COMMANDS, *TOOL_COMMANDS])}}} ...\n\n{DESCRIPTION}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facetransfer`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    silence_known_noise()
    try:
        if not args or args[0] in ("-h", "--help"):
            print(_usage())
            return 0 if args else 2
        if args[0] in TOOL_COMMANDS:
            _configure_logging()
            tune_malloc()  # CPU runs: reuse freed activation memory (see malloc_tuning.py)
            return tool_command(args[0])(args[1:])
        if args[0] not in TRAINING_COMMANDS and not args[0].startswith("-"):
            print(f"facetransfer: error: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
            return 2
        tune_malloc()
        from .training_cli import FaceTransferCLI  # imports PyTorch Lightning (which sets up its own log handler)

        _configure_logging()
        FaceTransferCLI(args=None if argv is None else args)
    except FaceTransferError as err:
        print(f"facetransfer: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the filesystem refused something: read-only, full, a symlink loop, no permission
        from .filesystem import describe_os_error

        logging.getLogger("facetransfer").debug("filesystem fault", exc_info=True)
        print(f"facetransfer: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facetransfer: interrupted", file=sys.stderr)
        return 130
    return 0


__all__ = ["DESCRIPTION", "TOOL_COMMANDS", "main", "register_command", "tool_command"]


if __name__ == "__main__":
    sys.exit(main())
