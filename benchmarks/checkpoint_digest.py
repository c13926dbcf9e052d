"""What the checkpoint content digest costs: its share of a ``facetransfer test`` run on ORL.

Every checkpoint carries a SHA-256 of its content, written at save time and checked at each load
(``facetransfer test`` reads its checkpoint three times: hyperparameters, split, weights). The
script trains one checkpoint per backbone (a linear probe on ORL, ``configs/linear_probe.yaml``),
then runs ``facetransfer test --ckpt_path`` as a fresh process several times; inside each, the time
spent in the digest check is added up. It prints the checkpoint size, the seconds of one check,
the checks per run, the run's wall time and the digest's share of it (target: < 2 %), and the
cost of the digest at save time::

    python benchmarks/checkpoint_digest.py --root ../shared/data/orl --repeats 5
    python benchmarks/checkpoint_digest.py --dataset synthetic --backbones scratch_cnn --repeats 1   # quick
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
# a process that runs `facetransfer test`, timing each digest check, and prints what it measured
DRIVER = r"""
import json, sys, time
start = time.perf_counter()
import facetransfer.io.checkpoint as digest
spent, calls = [0.0], [0]
original = digest.part_digest
def timed(value):
    t = time.perf_counter()
    try:
        return original(value)
    finally:
        spent[0] += time.perf_counter() - t
def counted_verify(checkpoint, path=None, _verify=digest.verify_digest):
    calls[0] += 1
    return _verify(checkpoint, path)
digest.part_digest = timed
digest.verify_digest = counted_verify  # every loader checks the digest through facetransfer.io.checkpoint.checked
from facetransfer.cli import main
code = main(sys.argv[1:])
print("DIGEST_BENCH " + json.dumps({"code": code, "digest_s": spent[0], "checks": calls[0],
                                    "in_process_s": time.perf_counter() - start}))
"""

BACKBONES = {
    "mobilenet_v2": ["--model.backbone", "mobilenet_v2", "--model.weights", "IMAGENET1K_V1"],
    "dlib_resnet": ["--model.backbone", "dlib_resnet", "--model.weights", "FACE_API"],
    "scratch_cnn": ["--model.backbone", "scratch_cnn", "--model.weights", "null", "--model.freeze", "none",
                    "--model.optimizer", "adam", "--model.head_c", "null", "--data.batch_size", "16"],
}


def data_args(dataset: str, root: str | None) -> list[str]:
    if dataset == "synthetic":
        return ["--data.dataset", "synthetic", "--data.dataset_args", "{num_identities: 6, images_per_identity: 8}"]
    return ["--data.dataset", "folder", "--data.root", str(root)]


def run(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DRIVER, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("DIGEST_BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"command failed ({done.returncode}): facetransfer {' '.join(args)}\n{done.stderr[-3000:]}")
    return wall, json.loads(line.partition(" ")[2])


def save_cost(ckpt: Path, repeats: int = 3) -> float:
    """Seconds to compute the digest of the checkpoint's content, as a save does (median)."""
    import torch

    from facetransfer.io.checkpoint import with_digest

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with_digest(checkpoint)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["folder", "synthetic"], default="folder")
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "orl"), help="ORL (folder layout)")
    parser.add_argument("--backbones", default="mobilenet_v2,dlib_resnet", help=f"comma-separated: {', '.join(BACKBONES)}")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/checkpoint_digest")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--data.num_workers", "0"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [b for b in args.backbones.split(",") if b]:
            runs = Path(tmp) / name
            fit = ["fit", "--config", str(REPO / "configs" / "linear_probe.yaml"), *BACKBONES[name],
                   *data_args(args.dataset, args.root), "--trainer.max_epochs", str(args.epochs),
                   "--trainer.default_root_dir", str(runs), *quiet]
            run(fit, env)
            ckpt = next(runs.rglob("last.ckpt"))
            walls, digests, checks, inside = [], [], [], []
            for _ in range(args.repeats):
                wall, measured = run(["test", "--ckpt_path", str(ckpt), *quiet], env)
                walls.append(wall)
                digests.append(measured["digest_s"])
                checks.append(measured["checks"])
                inside.append(measured["in_process_s"])
            rows.append({
                "backbone": name,
                "checkpoint_mb": round(ckpt.stat().st_size / 2**20, 1),
                "checks_per_run": max(checks),
                "digest_s_per_run": round(statistics.median(digests), 4),
                "test_wall_s": round(statistics.median(walls), 2),
                "test_in_process_s": round(statistics.median(inside), 2),
                "share_of_wall_pct": round(100 * statistics.median(d / w for d, w in zip(digests, walls)), 2),
                "share_of_in_process_pct": round(100 * statistics.median(d / i for d, i in zip(digests, inside)), 2),
                "digest_at_save_s": round(save_cost(ckpt), 4),
            })
    print("| backbone | checkpoint MB | checks per test | digest s per test | test wall s | share of wall | "
          "share of in-process time | digest at save s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['checkpoint_mb']} | {r['checks_per_run']} | {r['digest_s_per_run']} | "
              f"{r['test_wall_s']} | {r['share_of_wall_pct']} % | {r['share_of_in_process_pct']} % | {r['digest_at_save_s']} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint_digest.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
