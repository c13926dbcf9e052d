"""The paper's experiment in one command: strategies x backbones x training-set sizes x seeds.

    facetransfer sweep --config configs/experiments/demo.yaml

From Python::

    >>> from facetransfer.sweep import load_sweep_config, run_sweep
    >>> config = load_sweep_config("configs/experiments/demo.yaml", ["--trainer.max_epochs", "2"])  # doctest: +SKIP
    >>> result = run_sweep(config)  # doctest: +SKIP
    >>> result.report.plot  # doctest: +SKIP
    PosixPath('results/demo/accuracy_vs_n.png')
"""

from .config import MethodSpec, SweepConfig, build_sweep_config, load_sweep_config, sweep_parser
from .feature_store import FeatureStore
from .grid import Cell, build_cells, effective_sizes
from .report import Report, write_report
from .results import FIELDS as RESULT_FIELDS
from .results import ResultsTable
from .runner import SweepContext, SweepResult, run_cell, run_sweep

__all__ = [
    "RESULT_FIELDS",
    "Cell",
    "FeatureStore",
    "MethodSpec",
    "Report",
    "ResultsTable",
    "SweepConfig",
    "SweepContext",
    "SweepResult",
    "build_cells",
    "build_sweep_config",
    "effective_sizes",
    "load_sweep_config",
    "run_cell",
    "run_sweep",
    "sweep_parser",
    "write_report",
]
