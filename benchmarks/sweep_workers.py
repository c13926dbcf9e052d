"""Wall time of a sweep's whole grid run in different ways, its start-up, and whether the rows agree.

Each run is the ``facetransfer sweep`` command into a fresh output folder (empty feature cache),
timed from start to exit, Python start-up included, with the CPU seconds of all its processes
(workers included): on a busy machine the wall time says little, the CPU time says what the
workers cost. A run's start-up is the time until its first row is in ``results.csv`` less that
cell's own time (processes started, config and data checked); cells/s divides the grid by the wall
time. The runs take turns over ``--rounds`` rounds so that a busy machine slows them alike; the load
average is printed with every run::

    python benchmarks/sweep_workers.py --config configs/experiments/demo.yaml --runs "--workers 1" "--workers 2" \\
        "--workers 2 --num_threads 2" --rounds 2

It prints a Markdown table (wall seconds per round, median, cells/s, start-up, speed-up over the
first run) and the largest metric difference of each run against the first. Numbers are in
docs/performance.md and docs/scaling.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRICS = ("test_top1", "test_top5", "test_macro_f1")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def read_rows(out: Path) -> list[dict[str, str]]:
    try:
        with open(out / "results.csv", newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def run(config: str, out: Path, options: list[str]) -> dict[str, float]:
    """One ``facetransfer sweep`` into ``out``: wall and CPU seconds of its processes, start-up seconds."""
    cmd = [sys.executable, "-m", "facetransfer.sweep", "--config", config, "--output_dir", str(out), "--no-progress",
           "--no-report", *options]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    first = None
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while process.poll() is None:
            if first is None and read_rows(out):
                first = time.perf_counter() - start
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        if process.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{shlex.join(cmd)} failed:\n{err.read().decode()[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the sweep and the workers it waited for
    rows = read_rows(out)
    first_cell = float(rows[0]["cell_seconds"]) if rows else 0.0
    return {"wall": seconds, "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "startup": (first if first is not None else seconds) - first_cell, "cells": len(rows)}


def metrics(out: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    found = read_rows(out)
    keys = [(r["method"], r["train_samples"], r["seed"]) for r in found]
    if len(keys) != len(set(keys)):
        raise SystemExit(f"{out}: a cell has two rows")
    return {k: {m: float(r[m]) for m in METRICS} for k, r in zip(keys, found)}


def largest_difference(a: dict, b: dict) -> float:
    if set(a) != set(b):
        return float("inf")
    return max(abs(a[k][m] - b[k][m]) for k in a for m in METRICS)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "experiments" / "demo.yaml"))
    parser.add_argument("--runs", nargs="+", default=None,
                        help="sweep options of each run, e.g. '--workers 2' '--launcher submitit_local --workers 2'")
    parser.add_argument("--workers", default="1,2", help="without --runs: worker counts to compare, e.g. 1,2")
    parser.add_argument("--threads", type=int, default=None, help="without --runs: also run 1 worker at num_threads N")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=None, help="where the runs' folders go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = [f"--workers {k}" for k in args.workers.split(",")]
        args.runs += [f"--workers 1 --num_threads {args.threads}"] if args.threads else []
    base = Path(args.out or tempfile.mkdtemp(prefix="sweep_workers_"))
    print(f"# {datetime.date.today()}: {cpu_name()}, {len(os.sched_getaffinity(0))} cores; {args.config}")
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in args.runs}
    results: dict[str, dict] = {}
    for r in range(args.rounds):
        for name in args.runs:
            out = base / f"round{r}" / name.replace("--", "").replace(" ", "_")
            load = os.getloadavg()[0]
            found = run(args.config, out, shlex.split(name))
            measured[name].append(found)
            results.setdefault(name, metrics(out))
            print(f"round {r}: {name}: {found['wall']:.1f} s wall, {found['cpu']:.1f} s CPU, start-up {found['startup']:.1f} s "
                  f"(load average before {load:.1f})", flush=True)
    first = args.runs[0]
    reference = statistics.median(m["wall"] for m in measured[first])
    table = []
    print(f"\n| run | wall s per round | median wall s | cells/s | start-up s | speed-up | median CPU s | largest metric "
          f"difference vs {first} |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.runs:
        runs = measured[name]
        median = statistics.median(m["wall"] for m in runs)
        startup = statistics.median(m["startup"] for m in runs)
        cpu = statistics.median(m["cpu"] for m in runs)
        cells_per_s = runs[0]["cells"] / median
        diff = largest_difference(results[first], results[name])
        walls = ", ".join(f"{m['wall']:.1f}" for m in runs)
        table.append({"run": name, "seconds": [m["wall"] for m in runs], "median": median, "speedup": reference / median,
                      "cells_per_s": cells_per_s, "startup": startup, "cpu_seconds": [m["cpu"] for m in runs],
                      "difference": diff})
        print(f"| `{name}` | {walls} | {median:.1f} | {cells_per_s:.2f} | "
              f"{startup:.1f} | {reference / median:.2f}x | {cpu:.1f} | {diff:.3g} |")
    return table


if __name__ == "__main__":
    main()
