"""The paper's experiment in one command: strategies x backbones x training-set sizes x seeds.

    facetransfer sweep --config configs/experiments/demo.yaml

From Python::

    >>> from facetransfer.sweep import load_sweep_config, run_sweep
    >>> config = load_sweep_config("configs/experiments/demo.yaml", ["--trainer.max_epochs", "2"])  # doctest: +SKIP
    >>> result = run_sweep(config)  # doctest: +SKIP
    >>> result.report.plot  # doctest: +SKIP
    PosixPath('results/demo/accuracy_vs_n.png')

The same grid in two worker processes, and where a running grid stands::

    >>> result = run_sweep(config, parallel=ParallelOptions.from_args(workers="2"))  # doctest: +SKIP
    >>> print(format_status(sweep_status("results/demo")))  # doctest: +SKIP
"""

from .config import MethodSpec, SweepConfig, build_sweep_config, load_sweep_config, sweep_parser
from .feature_store import FeatureStore
from .grid import Cell, build_cells, effective_sizes
from .report import Report, write_report
from .results import FIELDS as RESULT_FIELDS
from .results import ResultsTable
from .run_options import ParallelOptions, SlurmOptions
from .runner import SweepContext, SweepResult, run_cell, run_sweep
from .shard import Shard
from .status import SweepStatus, format_status, sweep_status

__all__ = [
    "RESULT_FIELDS",
    "Cell",
    "FeatureStore",
    "MethodSpec",
    "ParallelOptions",
    "Report",
    "ResultsTable",
    "Shard",
    "SlurmOptions",
    "SweepConfig",
    "SweepContext",
    "SweepResult",
    "SweepStatus",
    "build_cells",
    "build_sweep_config",
    "effective_sizes",
    "format_status",
    "load_sweep_config",
    "run_cell",
    "run_sweep",
    "sweep_parser",
    "sweep_status",
    "write_report",
]
