"""Progress bars of long commands: on when a person watches (stderr is a terminal), off in logs.

    >>> parser = argparse.ArgumentParser()
    >>> add_progress_option(parser)
    >>> show_progress(parser.parse_args(["--no-progress"]))
    False
"""

from __future__ import annotations

import argparse
import sys


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress``; without either, a bar when stderr is a terminal."""
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw the progress bar for these parsed arguments."""
    chosen = getattr(args, "progress", None)
    return sys.stderr.isatty() if chosen is None else bool(chosen)


__all__ = ["add_progress_option", "show_progress"]
