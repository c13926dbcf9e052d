"""The ``sweep`` and ``report`` commands.

    facetransfer sweep --config configs/experiments/demo.yaml
    facetransfer sweep --config configs/experiments/offline_lfw.yaml --data.root ../shared/data/lfw-devtrain
    facetransfer sweep --config configs/experiments/offline_lfw.yaml --trainer.max_epochs 5 --seeds "[0, 1]" --dry_run
    facetransfer sweep --config configs/experiments/offline_lfw.yaml --only features_logreg,linear_probe
    facetransfer sweep --config configs/experiments/demo.yaml --print_config
    facetransfer sweep --config configs/experiments/paper_lfw.yaml --workers 8          # 8 workers, one GPU each
    facetransfer sweep --config configs/experiments/paper_lfw.yaml --launcher slurm --workers 16 \
        --slurm_partition gpu --slurm_time 720                                          # a SLURM job array
    facetransfer sweep --config configs/experiments/paper_lfw.yaml --shard 3/16         # one worker of 16 started elsewhere
    facetransfer sweep --status results/paper_lfw                                       # done / running / pending, time left
    facetransfer report results/offline_lfw
    python -m facetransfer.sweep --config configs/experiments/demo.yaml     # the same, without the facetransfer CLI

Any key of the config can be overridden with a dotted option (:mod:`facetransfer.sweep.config`).
``--help`` and ``--status`` load no Lightning: the ``--data.*``, ``--trainer.*`` and ``--model.*`` keys
are those of ``facetransfer fit --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, FaceTransferError, FileSystemError
from ..io.filesystem import describe_os_error, find_os_error
from ..training.malloc_tuning import tune_malloc
from .options import ToolParser, snake_case_args

COMMAND_OPTIONS = ("only", "dry_run", "no_report", "no_progress", "verbose", "status")


def sweep_command_parser(typed: bool = True):
    """The sweep parser plus the options of one run (not part of the experiment's config): this
    command's, :meth:`ParallelOptions.from_args`' and :class:`SlurmOptions`' (``typed``: see
    :func:`~facetransfer.sweep.config.sweep_parser`)."""
    from ..sweep.config import sweep_parser
    from ..sweep.parallel.run_options import ParallelOptions, SlurmOptions

    parser = sweep_parser(typed)
    parser.add_argument("--only", type=Optional[str], default=None,
                        help="run only these methods: comma-separated method names or strategies "
                             "(e.g. features_logreg,linear_probe); the others keep their rows")
    parser.add_argument("--dry_run", action="store_true", help="check everything and list the cells, train nothing")
    parser.add_argument("--no_report", "--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--no_progress", "--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="show Lightning's messages of each cell")
    parser.add_argument("--status", type=Optional[str], default=None, metavar="DIR",
                        help="show the cells of the sweep in DIR: done, running (by whom, since when), pending, time left; "
                             "needs no config")
    parser.add_function_arguments(ParallelOptions.from_args, None, skip={"slurm"}, as_group=True)
    parser.add_class_arguments(SlurmOptions, None, as_group=True)
    return parser


def sweep_command(argv: Sequence[str]) -> int:
    """``facetransfer sweep``: run (or resume) the grid of a sweep config, then write the report."""
    from dataclasses import fields

    from ..sweep.config import build_sweep_config, parse_sweep_args
    from ..sweep.parallel.run_options import ParallelOptions, SlurmOptions

    # --help and --status need no Lightning: the data/trainer/model groups are then plain mappings
    light = any(a in ("-h", "--help", "--status") or a.startswith("--status=") for a in argv)
    parser = sweep_command_parser(typed=not light)
    try:
        parsed = parse_sweep_args(snake_case_args(parser, argv), parser)
    except ConfigError as err:
        raise ConfigError(f"{err} (see 'facetransfer sweep --help')") from None
    options = {k: parsed.pop(k, None) for k in COMMAND_OPTIONS}
    if options["status"] is not None:  # cells done, running and pending, and the time left
        from ..sweep.parallel.status import format_status, sweep_status

        print(format_status(sweep_status(options["status"])))
        return 0
    parallel = ParallelOptions.from_args(
        **{k: parsed.pop(k, None) for k in ("workers", "shard", "launcher", "lease_seconds")},
        slurm={f.name: parsed.pop(f.name, None) for f in fields(SlurmOptions)},
    )
    from ..sweep.runner import run_sweep

    sources = [str(c) for c in (parsed.pop("config", None) or []) if c is not None]
    default_name = Path(sources[-1]).stem if sources else "sweep"
    tune_malloc()  # a command owns its process: CPU cells reuse freed activation memory
    config = build_sweep_config(parsed, default_name=default_name, sources=sources)
    if options["only"]:
        config = config.select([name.strip() for name in options["only"].split(",") if name.strip()])
    try:
        run_sweep(config, progress=not options["no_progress"], report=not options["no_report"],
                  dry_run=bool(options["dry_run"]), quiet=not options["verbose"], parallel=parallel)
    except KeyboardInterrupt:
        print("facetransfer: finished cells are in results.csv; run the same command to resume", file=sys.stderr)
        raise
    except Exception as err:  # a filesystem fault in any cell: one line, and what is kept
        fault = None if isinstance(err, FaceTransferError) else find_os_error(err)
        if fault is None and not isinstance(err, FileSystemError):
            raise
        text = str(err) if fault is None else describe_os_error(fault)
        results = config.output_dir / "results.csv"
        kept = f"the finished cells are kept in {results} (run the same command to resume)" if results.is_file() else \
            "no cell had finished"
        raise FileSystemError(f"{text}; {kept}") from err
    return 0


def report_command(argv: Sequence[str]) -> int:
    """``facetransfer report RESULTS_DIR``: the Markdown table, plot and TensorBoard figure of a sweep."""
    parser = ToolParser("report", "Write report.md, accuracy_vs_n.png and a TensorBoard figure from a sweep's "
                        "results.csv.")
    parser.add_argument("results_dir", type=str, help="a sweep's output_dir (holding results.csv)")
    parser.add_argument("--title", type=Optional[str], default=None,
                        help="title of the table and plot (default: the sweep's name)")
    args = parser.parse(argv)
    from ..sweep.report import write_report  # after parsing: --help stays light

    print(write_report(args.results_dir, title=args.title).describe())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m facetransfer.sweep [report DIR | --config FILE ...]``: the ``facetransfer sweep`` command."""
    from .main import main as facetransfer_main

    args = list(sys.argv[1:] if argv is None else argv)
    return facetransfer_main(args if args and args[0] in ("sweep", "report") else ["sweep", *args])


__all__ = ["main", "report_command", "sweep_command"]
