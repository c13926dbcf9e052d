"""Wall time of a sweep's whole grid with 1 and with K worker processes, and whether the rows agree.

Each run is the ``facetransfer sweep`` command into a fresh output folder (empty feature cache),
timed from start to exit, Python start-up included, with the CPU seconds of all its processes
(workers included): on a busy machine the wall time says little, the CPU time says what the
workers cost. The worker counts take turns over ``--rounds`` rounds so that a busy machine
slows them alike; the load average is printed with every run. ``--threads N`` adds a one-worker run at ``num_threads: N``, to see whether
the torch thread count changes any metric::

    python benchmarks/sweep_workers.py --config configs/experiments/demo.yaml --workers 1,2 --rounds 2 --threads 2

It prints a Markdown table (wall seconds per round, median, speed-up over the first worker
count) and the largest metric difference of each run against the first. Numbers from a 2-core
VM are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import resource
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


def run(config: str, out: Path, workers: int, threads: int | None, extra: list[str]) -> tuple[float, float]:
    """One ``facetransfer sweep`` into ``out``; its wall seconds and the CPU seconds of its processes."""
    cmd = [sys.executable, "-m", "facetransfer.sweep", "--config", config, "--output_dir", str(out), "--no-progress",
           "--no-report", "--workers", str(workers), *(["--num_threads", str(threads)] if threads else []), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the sweep and the workers it waited for
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def rows(out: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    with open(out / "results.csv", newline="") as fh:
        found = list(csv.DictReader(fh))
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
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="also run 1 worker at num_threads N")
    parser.add_argument("--out", default=None, help="where the runs' folders go (default: a temporary folder)")
    parser.add_argument("extra", nargs="*", help="more sweep options (after --)")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    variants: list[tuple[str, int, int | None]] = [(f"--workers {k}", k, None) for k in counts]
    if args.threads:
        variants.append((f"--workers 1 --num_threads {args.threads}", 1, args.threads))
    base = Path(args.out or tempfile.mkdtemp(prefix="sweep_workers_"))
    print(f"# {datetime.date.today()}: {cpu_name()}, {len(os.sched_getaffinity(0))} cores; {args.config}")
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    results: dict[str, dict] = {}
    for r in range(args.rounds):
        for name, workers, threads in variants:
            out = base / f"round{r}" / name.replace("--", "").replace(" ", "_")
            load = os.getloadavg()[0]
            seconds, cpu_seconds = run(args.config, out, workers, threads, args.extra)
            times[name].append(seconds)
            cpu[name].append(cpu_seconds)
            results.setdefault(name, rows(out))
            print(f"round {r}: {name}: {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU (load average before {load:.1f})",
                  flush=True)
    first = variants[0][0]
    reference = statistics.median(times[first])
    table = []
    print("\n| run | wall s per round | median wall s | speed-up | median CPU s | largest metric difference vs "
          + first + " |")
    print("|---|---|---:|---:|---:|---:|")
    for name, _, _ in variants:
        median = statistics.median(times[name])
        diff = largest_difference(results[first], results[name])
        table.append({"run": name, "seconds": times[name], "median": median, "speedup": reference / median,
                      "cpu_seconds": cpu[name], "difference": diff})
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in times[name])} | {median:.1f} | {reference / median:.2f}x | "
              f"{statistics.median(cpu[name]):.1f} | {diff:.3g} |")
    return table


if __name__ == "__main__":
    main()
