"""Cold start-up of the ``facetransfer`` commands that do not train.

Each command runs as a fresh process (``python -m facetransfer ...``) several times, in turns, next to a
process that only runs ``import torch``; the script prints the median and minimum wall time, the median
over ``import torch``, and whether the process imported PyTorch Lightning (none of these commands may).
Targets: ``facetransfer backbones`` <= 3 s, and every tool command's ``--help`` at most ``import torch``
+ 1 s, on 2 idle cores.

    python benchmarks/startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a process that runs the command, then says on stderr whether Lightning was imported
PROBE = (
    "import sys, runpy; sys.argv = ['facetransfer', *sys.argv[1:]]\n"
    "from facetransfer.cli import main\n"
    "try:\n    code = main()\nexcept SystemExit as exit:\n    code = exit.code\n"
    "print('LIGHTNING_IMPORTED', 'lightning' in sys.modules, file=sys.stderr)\n"
)


TOOL_COMMANDS = ("verify", "gallery", "align", "export", "data", "weights", "backbones", "strategies", "sweep", "report")


def commands(results: Path) -> dict[str, list[str]]:
    return {
        "--help": ["--help"],
        "backbones": ["backbones"],
        "strategies": ["strategies"],
        "weights list": ["weights", "list"],
        "report": ["report", str(results)],
        "sweep --status": ["sweep", "--status", str(results)],
        **{f"{name} --help": [name, "--help"] for name in TOOL_COMMANDS},
    }


def make_results(folder: Path) -> Path:
    """A tiny results.csv so that ``facetransfer report`` has something to draw."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "dataset,method,strategy,backbone,weights,train_samples,seed,identities,test_images,pool_size," \
             "test_top1,test_top5,test_macro_f1,train_seconds,cell_seconds,device,finished_at"
    rows = [f"synthetic,prototype/x,prototype,x,none,{n},0,4,8,20,0.5,0.9,0.4,0.1,0.2,cpu,2026-01-01T00:00:00+00:00"
            for n in (4, 8)]
    (folder / "results.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


def run_once(args: list[str], probe: str = PROBE) -> tuple[float, bool, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, "LIGHTNING_IMPORTED True" in done.stderr, done.returncode


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated command labels (default: all)")
    parser.add_argument("--out", default="results/startup")
    args = parser.parse_args(argv)
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        table = commands(make_results(Path(tmp) / "results"))
        if args.only:
            table = {k: v for k, v in table.items() if k in args.only.split(",")}
        times: dict[str, list[float]] = {k: [] for k in table}
        torch_times: list[float] = []
        lightning: dict[str, bool] = {}
        codes: dict[str, int] = {}
        for _ in range(args.repeats):  # the commands take turns: a noisy machine hits them alike
            torch_times.append(run_once([], "import torch")[0])
            for label, command in table.items():
                seconds, imported, code = run_once(command)
                times[label].append(seconds)
                lightning[label] = lightning.get(label, False) or imported
                codes[label] = code
    torch_s = statistics.median(torch_times)
    rows = [
        {"command": f"facetransfer {label}", "median_s": round(statistics.median(t), 2), "min_s": round(min(t), 2),
         "over_import_torch_s": round(statistics.median(t) - torch_s, 2), "imports_lightning": lightning[label],
         "exit_code": codes[label]}
        for label, t in times.items()
    ]
    print(f"import torch: median {torch_s:.2f} s")
    print(f"{'command':32s} {'median s':>9s} {'min s':>7s} {'- torch s':>9s}  Lightning imported")
    for row in rows:
        print(f"{row['command']:32s} {row['median_s']:9.2f} {row['min_s']:7.2f} {row['over_import_torch_s']:9.2f}  "
              f"{row['imports_lightning']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
