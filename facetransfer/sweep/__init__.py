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

# the public names by submodule (imported on first use: the report and status commands need no Lightning)
_MODULES = {
    "config": ["MethodSpec", "PairsVerification", "SweepConfig", "build_sweep_config", "load_sweep_config", "sweep_parser"],
    "plan": ["Cell", "build_cells", "effective_sizes", "run_cell"],
    "feature_store": ["FeatureStore"],
    "results": ["ResultsTable"],
    "report": ["Report", "write_report"],
    "runner": ["SweepResult", "run_sweep"],
    "parallel.run_options": ["ParallelOptions", "Shard", "SlurmOptions"],
    "parallel.status": ["SweepStatus", "format_status", "sweep_status"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names} | {"RESULT_FIELDS": "results:FIELDS"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
