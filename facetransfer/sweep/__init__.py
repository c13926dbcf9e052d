"""The paper's experiment in one command: strategies x backbones x training-set sizes x seeds.

    facetransfer sweep --config configs/experiments/demo.yaml

From Python::

    >>> from facetransfer.sweep import load_sweep_config, run_sweep
    >>> config = load_sweep_config("configs/experiments/demo.yaml", ["--trainer.max_epochs", "2"])  # doctest: +SKIP
    >>> result = run_sweep(config)  # doctest: +SKIP
    >>> result.report.plot  # doctest: +SKIP
    PosixPath('results/demo/accuracy_vs_n.png')
"""

from .config import STRATEGIES, MethodSpec, SweepConfig, load_sweep_config, validate_sweep_config
from .feature_store import FeatureStore, SweepDataModule
from .grid import Cell, build_cells, effective_sizes
from .report import Report, write_report
from .results import FIELDS as RESULT_FIELDS
from .results import ResultsTable
from .runner import SweepResult, run_sweep
from .strategies import run_cell

__all__ = [
    "RESULT_FIELDS",
    "STRATEGIES",
    "Cell",
    "FeatureStore",
    "MethodSpec",
    "Report",
    "ResultsTable",
    "SweepConfig",
    "SweepDataModule",
    "SweepResult",
    "build_cells",
    "effective_sizes",
    "load_sweep_config",
    "run_cell",
    "run_sweep",
    "validate_sweep_config",
    "write_report",
]
