"""The ``facetransfer`` command: LightningCLI's fit/validate/test/predict plus tool commands.

    facetransfer fit --config configs/linear_probe.yaml --data.dataset folder --data.root faces/
    facetransfer test --ckpt_path runs/.../last.ckpt
    facetransfer weights import mobilenet_v2-b0353104.pth
    facetransfer backbones
    facetransfer sweep --config configs/experiments/demo.yaml
    facetransfer report results/demo

Only the training commands load PyTorch Lightning. Bad input and filesystem faults end with one
``facetransfer: error: ...`` line and exit status 2, not a traceback (``FACETRANSFER_LOGLEVEL=DEBUG`` logs
the traceback of a filesystem fault).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ..errors import FaceTransferError
from ..training.malloc_tuning import tune_malloc
from ..training.noise import silence_known_noise
from .commands import DESCRIPTION, TOOL_COMMANDS, TRAINING_COMMANDS, tool_command


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
        from .fit import FaceTransferCLI  # imports PyTorch Lightning (which sets up its own log handler)

        _configure_logging()
        FaceTransferCLI(args=None if argv is None else args)
    except FaceTransferError as err:
        print(f"facetransfer: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the filesystem refused something: read-only, full, a symlink loop, no permission
        from ..io.filesystem import describe_os_error

        logging.getLogger("facetransfer").debug("filesystem fault", exc_info=True)
        print(f"facetransfer: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facetransfer: interrupted", file=sys.stderr)
        return 130
    return 0


__all__ = ["main"]
