"""The throughput benchmark runs end to end on CPU (a smoke test: speed is not asserted)."""

from __future__ import annotations

import json
import runpy

from .fakes import REPO, make_lfw_tree


def test_throughput_benchmark_cpu_smoke(tmp_path, capsys):
    root = make_lfw_tree(tmp_path / "lfw", {f"Person_{i}": 6 for i in range(4)}, size=72)
    bench = runpy.run_path(str(REPO / "benchmarks" / "throughput.py"))["main"]
    rows = bench(["--root", str(root), "--backbones", "scratch_cnn", "--probe", "scratch_cnn", "--batch-size", "4",
                  "--input-size", "32", "--epochs", "2", "--steps", "2", "--warmup", "1", "--workers", "1", "--cpu",
                  "--out", str(tmp_path / "out")])
    assert [r["model"] for r in rows] == ["scratch_cnn", "scratch_cnn linear-probe feature pass"]
    for row in rows:
        assert row["ceiling"] > 0 and row["ours"] > 0 and row["ratio"] > 0
    assert rows[0]["pil"] > 0 and rows[0]["cache"] == "memory"
    saved = json.loads((tmp_path / "out" / "throughput.json").read_text())
    assert saved == json.loads(json.dumps(rows))
    assert "| scratch_cnn |" in capsys.readouterr().out
