"""The report of a sweep: Markdown tables, an accuracy-vs-N plot, and both in TensorBoard: top-1 of closed-set
cells, pair verification of open-set cells' test people and of a ``verify:`` pairs file where measured.

Built from ``results.csv`` alone, so it can be remade at any time
(``facetransfer report results/demo``)::

    >>> report = write_report("results/demo")  # doctest: +SKIP
    >>> print(report.markdown)  # doctest: +SKIP
    | method | N=20 | N=60 | N=220 (all) |
    ...
    >>> report.plot  # doctest: +SKIP
    PosixPath('results/demo/accuracy_vs_n.png')
"""

from __future__ import annotations

import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..errors import DataError
from ..io.atomic import atomic_path, atomic_write
from .results import RESULTS_NAME, ResultsTable, read_state

REPORT_NAME = "report.md"
REPORT_LOCK_NAME = ".report.lock"
PLOT_NAME = "accuracy_vs_n.png"
TENSORBOARD_SUBDIR = os.path.join("logs", "report")
FIGURE_TAG = "sweep/accuracy_vs_n"
TABLE_TAG = "sweep/table"


@dataclass
class Report:
    """Where a report was written, and its Markdown text."""

    markdown: str
    table_path: Path
    plot: Path
    tensorboard_dir: Path
    rows: int

    def describe(self) -> str:
        """The table and where the files are, for a terminal."""
        return (f"{self.markdown}\nresults: {self.table_path.parent / RESULTS_NAME}\ntable:   {self.table_path}\n"
                f"plot:    {self.plot}\nTensorBoard (figure, table and every cell's curves): tensorboard --logdir "
                f"{self.tensorboard_dir.parent}")


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(fractions: list[float]) -> str:
    """Mean (± std over seeds) in %."""
    mean, std = _stats(fractions)
    return f"{mean * 100:.1f} ± {std * 100:.1f}" if len(fractions) > 1 else f"{mean * 100:.1f}"


def _method_order(folder: Path, rows: list[dict[str, Any]]) -> list[str]:
    """The methods with rows: in the config's order (``sweep.json``), then those only the rows name."""
    recorded = [m for m in read_state(folder).get("method_order", []) if isinstance(m, str)]
    present = {r["method"] for r in rows}
    return [m for m in dict.fromkeys([*recorded, *(r["method"] for r in rows)]) if m in present]


#: what the report shows, each as a table and a panel of the plot where some row measured it: (column, what, axis)
METRICS = (
    ("test_top1", "Test top-1 accuracy (%)", "test top-1 accuracy (%)"),
    ("test_verify_acc", "Pair verification accuracy (%) of the test people, never trained on,",
     "verification accuracy, test people (%)"),
    ("pairs_verify_acc", "Pair verification accuracy (%) of the people of the verify: pairs file, never trained on,",
     "verification accuracy, pairs file (%)"),
)


#: the details table's columns where measured: (header, column)
DETAILS = (("top-1", "test_top1"), ("top-5", "test_top5"), ("macro-F1", "test_macro_f1"),
           ("verify acc", "test_verify_acc"), ("verify AUC", "test_verify_auc"), ("verify TAR", "test_verify_tar"),
           ("pairs acc", "pairs_verify_acc"), ("pairs AUC", "pairs_verify_auc"), ("pairs TAR", "pairs_verify_tar"))


def _measured(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [metric for metric in METRICS if any(r.get(metric[0]) is not None for r in rows)]


def _axis(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """The grid's size axis: its column and symbol (``N`` training images, ``K`` training people)."""
    people = any(r.get("train_identities") is not None for r in rows)
    return ("train_identities", "K") if people else ("train_samples", "N")


def _series(folder: Path, rows: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """The rows by method (in report order), then by size (one row per seed)."""
    axis, _ = _axis(rows)
    series: dict[str, dict[int, list[dict[str, Any]]]] = {m: defaultdict(list) for m in _method_order(folder, rows)}
    for row in rows:
        series[row["method"]][row[axis]].append(row)
    return series


def _size_label(n: int, rows: list[dict[str, Any]]) -> str:
    axis, symbol = _axis(rows)
    every = any(r[axis] == n and r["train_samples"] == r["pool_size"] for r in rows)
    return f"{symbol}={n} (all)" if every else f"{symbol}={n}"


def _mean_cell(points: list[dict[str, Any]], column: str) -> str:
    values = [r[column] for r in points if r.get(column) is not None]
    return _fmt(values) if values else "–"


def markdown_table(folder: Path, rows: list[dict[str, Any]], title: str | None = None) -> str:
    """Per measured metric (top-1, verification of the test people, of the pairs file), the % per method (rows) and
    training-set size (columns: N images or K people), then details."""
    series = _series(folder, rows)
    axis, symbol = _axis(rows)
    sizes = sorted({r[axis] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    datasets = sorted({r["dataset"] for r in rows})
    identities = sorted({r["identities"] for r in rows})
    tests = sorted({r["test_images"] for r in rows})
    devices = sorted({r["device"] for r in rows})
    balanced = bool(read_state(folder).get("config", {}).get("data", {}).get("balanced_eval"))
    measured = _measured(rows)
    size = "training-set size N" if symbol == "N" else "number of training people K"
    header = ["method", "strategy", "backbone", "weights", *[_size_label(n, rows) for n in sizes]]
    lines = [f"## {title}" if title else "## Sweep results", ""]
    same_number = " (the same number per identity)" if balanced else ""
    trained = "training people" if any(r.get("test_verify_acc") is not None for r in rows) else "identities"
    for column, what, _ in measured:
        lines += [
            f"{what} on {', '.join(datasets)}: {'/'.join(map(str, identities))} {trained}, "
            f"{'/'.join(map(str, tests))} test images{same_number}, by {size}; "
            + (f"mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))})." if len(seeds) > 1
               else f"seed {seeds[0]}."),
            "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * len(sizes)) + "|",
        ]
        for method, points in series.items():
            first = next(iter(points.values()))[0]
            cells = [_mean_cell(points[n], column) if n in points else "–" for n in sizes]
            described = [method, first["strategy"], first["backbone"], first["weights"], *cells]
            lines.append("| " + " | ".join(described) + " |")
        lines.append("")
    details = [(name, column) for name, column in DETAILS if any(r.get(column) is not None for r in rows)]
    lines += ["Details (means over seeds): metrics in %, train seconds per cell.", "",
              f"| method | {symbol} | seeds | " + " | ".join(name for name, _ in details) + " | train s | device |",
              "|---|---:|---:|" + "---:|" * len(details) + "---:|---|"]
    for method, points in series.items():
        for n, pts in sorted(points.items()):
            values = [_mean_cell(pts, column) for _, column in details]
            lines.append(
                f"| {method} | {_size_label(n, rows).partition('=')[2]} | {len(pts)} | {' | '.join(values)} | "
                f"{statistics.fmean(r['train_seconds'] for r in pts):.1f} | {', '.join(sorted({r['device'] for r in pts}))} |"
            )
    total = sum(r["cell_seconds"] for r in rows)
    lines += ["", f"{len(rows)} cells, {total / 60:.1f} min of cell time in total; device: {', '.join(devices)}."]
    return "\n".join(lines) + "\n"


def _plot_style(strategy: str) -> tuple[str, str]:
    """The strategy's line style and marker (a strategy no longer installed gets the default)."""
    from ..strategies.base import STRATEGIES, Strategy

    return (STRATEGIES.get(strategy) if strategy in STRATEGIES else Strategy).plot_style


def accuracy_figure(folder: Path, rows: list[dict[str, Any]], title: str | None = None):
    """Each measured metric vs training-set size (log x) in a panel of its own: one line per method (backbone x
    strategy), mean ± std over seeds, and chance as a dotted line (1 / identities for top-1, 50 % for verification)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    axis, symbol = _axis(rows)
    measured = _measured(rows)
    fig = Figure(figsize=(7.5 * len(measured), 4.8), dpi=120)
    sizes = sorted({r[axis] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    about = f"{'/'.join(sorted({r['dataset'] for r in rows}))}, {'/'.join(str(i) for i in sorted({r['identities'] for r in rows}))} identities"
    spread = f", mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else ""
    for panel, (column, _, label) in enumerate(measured, start=1):
        ax = fig.add_subplot(1, len(measured), panel)
        for method, points in _series(folder, rows).items():
            ns = [n for n in sorted(points) if any(r.get(column) is not None for r in points[n])]
            if not ns:
                continue
            means, stds = zip(*[_stats([r[column] * 100 for r in points[n] if r.get(column) is not None]) for n in ns])
            linestyle, marker = _plot_style(points[ns[0]][0]["strategy"])
            (line,) = ax.plot(ns, means, linestyle=linestyle, marker=marker, label=method)
            if any(d > 0 for d in stds):
                ax.fill_between(ns, [m - d for m, d in zip(means, stds)], [m + d for m, d in zip(means, stds)],
                                color=line.get_color(), alpha=0.15, linewidth=0)
        if column == "test_top1":  # a constant or random answer on a balanced test set
            for identities in sorted({r["identities"] for r in rows}):
                ax.axhline(100 / identities, color="grey", linestyle=":", linewidth=1.2,
                           label=f"chance (1 / {identities})")
            top = max(r[column] for r in rows if r.get(column) is not None)
            ax.set_ylim(bottom=0, top=min(100, max(5, math.ceil(top * 110))))
        else:  # balanced same / different pairs
            ax.axhline(50, color="grey", linestyle=":", linewidth=1.2, label="chance (50 %)")
            ax.set_ylim(bottom=40, top=100)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training images N (log scale)" if symbol == "N" else "training people K (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{title or 'accuracy vs training-set size'} ({about}{spread})" if panel == 1 else label,
                     fontsize=9)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def write_report(folder: str | os.PathLike, title: str | None = None) -> Report:
    """Write ``report.md``, ``accuracy_vs_n.png`` and a TensorBoard figure + table from ``results.csv``
    (``title``: default the sweep's name). Two processes writing the report of one folder take turns."""
    folder = Path(folder)
    table = ResultsTable(folder / RESULTS_NAME)
    if not table.path.is_file():
        raise DataError(f"no {RESULTS_NAME} in {folder}: run a sweep into it first (facetransfer sweep --config ...)")
    with FileLock(folder / REPORT_LOCK_NAME):
        rows = table.rows()
        if not rows:
            raise DataError(f"{table.path} has no finished cells yet")
        name = read_state(folder).get("name")
        title = title if title is not None else name if isinstance(name, str) else None
        markdown = markdown_table(folder, rows, title)
        with atomic_write(folder / REPORT_NAME) as fh:
            fh.write(markdown)
        fig = accuracy_figure(folder, rows, title)
        with atomic_path(folder / PLOT_NAME) as tmp:
            fig.savefig(tmp, format="png")

        from torch.utils.tensorboard import SummaryWriter

        tb_dir = folder / TENSORBOARD_SUBDIR
        tb_dir.mkdir(parents=True, exist_ok=True)
        for old in tb_dir.glob("events.out.tfevents.*"):  # the report is remade from the CSV, not appended
            old.unlink()
        writer = SummaryWriter(str(tb_dir))
        try:
            writer.add_figure(FIGURE_TAG, fig, global_step=len(rows), close=False)
            writer.add_text(TABLE_TAG, markdown, global_step=len(rows))
            for column, _, _ in _measured(rows):
                tag = "sweep_top1" if column == "test_top1" else f"sweep_{column.removeprefix('test_')}"
                for method, points in _series(folder, rows).items():
                    for n, pts in sorted(points.items()):
                        values = [r[column] for r in pts if r.get(column) is not None]
                        if values:
                            writer.add_scalar(f"{tag}/{method}", statistics.fmean(values), global_step=n)
        finally:
            writer.close()
    return Report(markdown, folder / REPORT_NAME, folder / PLOT_NAME, tb_dir, len(rows))


def read_report(folder: str | os.PathLike) -> Report:
    """The report another process wrote into ``folder`` (``report.md`` and where the rest is)."""
    folder = Path(folder)
    rows = len(ResultsTable(folder / RESULTS_NAME).rows())
    table = folder / REPORT_NAME
    return Report(table.read_text(), table, folder / PLOT_NAME, folder / TENSORBOARD_SUBDIR, rows)


__all__ = ["Report", "accuracy_figure", "markdown_table", "read_report", "write_report"]
