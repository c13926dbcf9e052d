"""How long a ``linear_probe`` cell takes on cached features, next to ``features_logreg``.

Runs ``configs/experiments/probe_vs_logreg.yaml`` (or another sweep config) into a scratch folder:
first the ``features_logreg`` methods, which extract and cache each backbone's features, then the
``linear_probe`` methods on the cached features. Prints, per cell, the whole cell time (model
built, Lightning fit with best-val checkpoint, test) and the top-1 of both methods. Target: a
linear-probe cell <= 5 s on 2 CPU cores.

    python benchmarks/linear_probe_cells.py --root ../shared/data/lfw-devtrain
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 5.0


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "experiments" / "probe_vs_logreg.yaml"))
    parser.add_argument("--root", default=None, help="data.root of the config (e.g. ../shared/data/lfw-devtrain)")
    parser.add_argument("--overrides", nargs="*", default=[], help="more sweep options, e.g. --train_samples '[50]'")
    parser.add_argument("--out", default="results/linear_probe_cells")
    args = parser.parse_args(argv)

    from facetransfer import tune_malloc
    from facetransfer.sweep import load_sweep_config, run_sweep

    tune_malloc()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["--output_dir", tmp, *(["--data.root", args.root] if args.root else []), *args.overrides]
        config = load_sweep_config(args.config, overrides)
        quiet = {"progress": False, "report": False, "echo": lambda _: None}
        run_sweep(config.select(["features_logreg"]), **quiet)  # extracts and caches the features
        run_sweep(config.select(["linear_probe"]), **quiet)
        with open(Path(tmp) / "results.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    logreg = {(r["backbone"], r["train_samples"]): r for r in rows if r["strategy"] == "features_logreg"}
    table = []
    for r in rows:
        if r["strategy"] != "linear_probe":
            continue
        other = logreg.get((r["backbone"], r["train_samples"]))
        table.append({
            "backbone": r["backbone"], "train_samples": int(r["train_samples"]),
            "probe_cell_s": round(float(r["cell_seconds"]), 2), "probe_fit_s": round(float(r["train_seconds"]), 2),
            "probe_top1": round(float(r["test_top1"]) * 100, 1),
            "logreg_top1": round(float(other["test_top1"]) * 100, 1) if other else None,
            "device": r["device"],
        })
    print(f"{'backbone':14s} {'N':>5s} {'cell s':>7s} {'fit s':>6s} {'/ 5 s':>6s} {'probe top-1':>12s} {'logreg top-1':>13s}")
    for t in table:
        print(f"{t['backbone']:14s} {t['train_samples']:5d} {t['probe_cell_s']:7.2f} {t['probe_fit_s']:6.2f} "
              f"{t['probe_cell_s'] / TARGET_SECONDS:6.2f} {t['probe_top1']:12.1f} {t['logreg_top1']:13.1f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "linear_probe_cells.json").write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
