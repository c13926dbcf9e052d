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

from .._lazy import lazy_attributes

# public name -> submodule (imported on first use: the report and status commands need no Lightning)
_EXPORTS = {
    "Cell": "plan",
    "FeatureStore": "feature_store",
    "MethodSpec": "config",
    "ParallelOptions": "parallel.run_options",
    "RESULT_FIELDS": "results:FIELDS",
    "Report": "report",
    "ResultsTable": "results",
    "Shard": "parallel.run_options",
    "SlurmOptions": "parallel.run_options",
    "SweepConfig": "config",
    "SweepResult": "runner",
    "SweepStatus": "parallel.status",
    "build_cells": "plan",
    "build_sweep_config": "config",
    "effective_sizes": "plan",
    "format_status": "parallel.status",
    "load_sweep_config": "config",
    "run_cell": "plan",
    "run_sweep": "runner",
    "sweep_parser": "config",
    "sweep_status": "parallel.status",
    "write_report": "report",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
