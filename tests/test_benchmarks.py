"""The throughput benchmark runs end to end on CPU (a smoke test: speed is not asserted)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys

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


def test_startup_benchmark_smoke(tmp_path, capsys):
    bench = runpy.run_path(str(REPO / "benchmarks" / "startup.py"))["main"]
    rows = bench(["--repeats", "1", "--only", "backbones", "--out", str(tmp_path / "out")])
    assert [r["command"] for r in rows] == ["facetransfer backbones"]
    assert rows[0]["exit_code"] == 0 and rows[0]["imports_lightning"] is False and rows[0]["median_s"] > 0
    assert "facetransfer backbones" in capsys.readouterr().out


def test_the_commands_that_do_not_train_never_import_lightning(tmp_path):
    """Every command the start-up benchmark times runs, one after another, in one fresh process
    (one torch import instead of one per command); none of them may import PyTorch Lightning."""
    startup = runpy.run_path(str(REPO / "benchmarks" / "startup.py"))
    table = startup["commands"](startup["make_results"](tmp_path / "results"))
    script = (
        "import io, json, sys, contextlib\n"
        "from facetransfer.cli import main\n"
        "codes = {}\n"
        "for label, args in json.loads(sys.argv[1]).items():\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n            codes[label] = main(args)\n"
        "        except SystemExit as exit:\n            codes[label] = exit.code\n"
        "    codes[label + ' imported lightning'] = 'lightning' in sys.modules\n"
        "print(json.dumps(codes))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(table)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(codes) == {*table, *(f"{label} imported lightning" for label in table)}
    assert all(codes[label] in (0, None) and codes[f"{label} imported lightning"] is False for label in table), codes


def test_linear_probe_cells_benchmark_smoke(tmp_path, capsys):
    from .test_sweep import tiny_sweep, write_config

    methods = [{"strategy": "features_logreg", "backbone": "scratch_cnn"}, {"strategy": "linear_probe", "backbone": "scratch_cnn"}]
    config = write_config(tmp_path, tiny_sweep(tmp_path, methods=methods, train_samples=[12]))
    bench = runpy.run_path(str(REPO / "benchmarks" / "linear_probe_cells.py"))["main"]
    rows = bench(["--config", str(config), "--out", str(tmp_path / "out")])
    assert [(r["backbone"], r["train_samples"]) for r in rows] == [("scratch_cnn", 12)]
    assert rows[0]["probe_cell_s"] > 0 and rows[0]["logreg_top1"] is not None
    assert "/ 5 s" in capsys.readouterr().out
