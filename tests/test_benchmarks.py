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


def test_cpu_speed_benchmark_smoke(tmp_path, capsys):
    bench = runpy.run_path(str(REPO / "benchmarks" / "cpu_speed.py"))["main"]
    rows = bench(["--backbones", "scratch_cnn", "--size", "32", "--batch-size", "4", "--train-batch-size", "4",
                  "--steps", "2", "--warmup", "1", "--repeats", "1", "--threads", "1", "--out", str(tmp_path / "out")])
    assert [r["backbone"] for r in rows] == ["scratch_cnn", "scratch_cnn"]
    assert rows[1]["malloc_tuned"] is False  # the second process runs with FACETRANSFER_TUNE_MALLOC=0
    keys = ["infer_contiguous", "infer_channels_last", "infer_folded", "train_contiguous", "train_channels_last"]
    assert all(r[k] > 0 for r in rows for k in keys)
    assert json.loads((tmp_path / "out" / "cpu_speed.json").read_text()) == json.loads(json.dumps(rows))
    assert "| scratch_cnn (32 px, batch 4) | no |" in capsys.readouterr().out


def test_startup_benchmark_and_no_lightning_for_light_commands(tmp_path, capsys):
    """The commands that do not train start without importing PyTorch Lightning."""
    bench = runpy.run_path(str(REPO / "benchmarks" / "startup.py"))["main"]
    rows = bench(["--repeats", "1", "--out", str(tmp_path / "out")])
    assert {r["command"] for r in rows} >= {"facetransfer backbones", "facetransfer --help", "facetransfer report"}
    for row in rows:
        assert row["exit_code"] == 0 and row["imports_lightning"] is False, row
        assert row["median_s"] > 0


def test_linear_probe_cells_benchmark_smoke(tmp_path, capsys):
    from .test_sweep import tiny_sweep, write_config

    methods = [{"strategy": "features_logreg", "backbone": "scratch_cnn"}, {"strategy": "linear_probe", "backbone": "scratch_cnn"}]
    config = write_config(tmp_path, tiny_sweep(tmp_path, methods=methods, train_samples=[12]))
    bench = runpy.run_path(str(REPO / "benchmarks" / "linear_probe_cells.py"))["main"]
    rows = bench(["--config", str(config), "--out", str(tmp_path / "out")])
    assert [(r["backbone"], r["train_samples"]) for r in rows] == [("scratch_cnn", 12)]
    assert rows[0]["probe_cell_s"] > 0 and rows[0]["logreg_top1"] is not None
    assert "/ 5 s" in capsys.readouterr().out
