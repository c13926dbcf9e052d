"""The ``sweep`` and ``report`` commands (argparse; no LightningCLI/jsonargparse needed).

    facetransfer sweep --config configs/experiments/demo.yaml
    facetransfer sweep --config configs/experiments/offline_lfw.yaml --data.root ../shared/data/lfw-devtrain
    facetransfer sweep --config configs/experiments/offline_lfw.yaml --trainer.max_epochs 5 --seeds "[0, 1]" --dry-run
    facetransfer sweep --config configs/experiments/offline_lfw.yaml --only features_logreg,linear_probe
    facetransfer report results/offline_lfw
    python -m facetransfer.sweep --config configs/experiments/demo.yaml     # the same, without the facetransfer CLI

Any config key can be overridden with a dotted option whose value is read as YAML
(``--data.root PATH``, ``--train_samples "[50, all]"``, ``--methods.0.model.lr 1e-3``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import FaceTransferError
from ..malloc_tuning import tune_malloc

SWEEP_EPILOG = """config overrides (any key of the YAML, value read as YAML):
  --data.root PATH              --trainer.max_epochs 5          --output_dir results/x
  --train_samples "[50, 100, all]"   --seeds "[0, 1, 2]"        --methods.0.model.lr 1e-3

Results: <output_dir>/results.csv (one row per cell; a rerun skips finished cells),
report.md, accuracy_vs_n.png, and TensorBoard logs under <output_dir>/logs."""


def sweep_command(argv: Sequence[str]) -> int:
    """``facetransfer sweep``: run (or resume) the grid of a sweep config, then write the report."""
    from .config import load_sweep_config
    from .runner import run_sweep

    parser = argparse.ArgumentParser(
        prog="facetransfer sweep",
        description="Run the paper's comparison: strategies x backbones x training-set sizes x seeds.",
        epilog=SWEEP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", action="append", required=True, metavar="FILE",
                        help="sweep YAML (configs/experiments/*.yaml); repeat to merge several")
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help="run only these methods: comma-separated method names or strategies "
                             "(e.g. features_logreg,linear_probe); the others keep their rows")
    parser.add_argument("--dry-run", "--dry_run", action="store_true", help="check everything and list the cells, train nothing")
    parser.add_argument("--no-report", "--no_report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--no-progress", "--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="show Lightning's messages of each cell")
    args, overrides = parser.parse_known_args(list(argv))
    tune_malloc()  # a command owns its process: CPU cells reuse freed activation memory
    config = load_sweep_config(args.config, overrides)
    if args.only:
        config = config.select([name.strip() for name in args.only.split(",") if name.strip()])
    run_sweep(config, progress=not args.no_progress, report=not args.no_report, dry_run=args.dry_run, quiet=not args.verbose)
    return 0


def report_command(argv: Sequence[str]) -> int:
    """``facetransfer report RESULTS_DIR``: the Markdown table, plot and TensorBoard figure of a sweep."""
    from .report import write_report

    parser = argparse.ArgumentParser(
        prog="facetransfer report",
        description="Write report.md, accuracy_vs_n.png and a TensorBoard figure from a sweep's results.csv.",
    )
    parser.add_argument("results_dir", help="a sweep's output_dir (holding results.csv)")
    parser.add_argument("--title", default=None, help="title of the table and plot (default: the sweep's name)")
    args = parser.parse_args(list(argv))
    report = write_report(args.results_dir, title=args.title)
    print(report.markdown)
    print(f"table: {report.table_path}")
    print(f"plot:  {report.plot}")
    print(f"TensorBoard: tensorboard --logdir {report.tensorboard_dir.parent}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m facetransfer.sweep [report DIR | --config FILE ...]`` with one-line errors (exit 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "report":
            return report_command(args[1:])
        if args and args[0] == "sweep":
            args = args[1:]
        return sweep_command(args)
    except FaceTransferError as err:
        print(f"facetransfer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facetransfer: interrupted (finished cells are in results.csv; run the same command to resume)", file=sys.stderr)
        return 130


__all__ = ["main", "report_command", "sweep_command"]
