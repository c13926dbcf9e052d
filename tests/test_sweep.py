"""`facetransfer sweep` / `report`: config checks, a tiny grid end to end, resume, SIGKILL, feature cache."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from facetransfer.cli import main
from facetransfer.errors import ConfigError
from facetransfer.sweep import ResultsTable, load_sweep_config, run_sweep
from facetransfer.sweep.report import FIGURE_TAG, TABLE_TAG

from .fakes import REPO

TINY_BACKBONE = {"widths": [8, 16], "fc_features": 32, "input_size": 32}


def tiny_sweep(tmp_path: Path, **changes) -> dict:
    """A 6-identity synthetic grid whose cells take about a second each."""
    config = {
        "name": "tiny",
        "output_dir": str(tmp_path / "results"),
        "data": {
            "dataset": "synthetic",
            "dataset_args": {"num_identities": 6, "images_per_identity": 8, "image_size": 40},
            "batch_size": 16,
            "num_workers": 0,
        },
        "trainer": {"max_epochs": 1, "accelerator": "cpu"},
        "model": {"lr": 1.0e-3, "backbone_args": TINY_BACKBONE},
        "train_samples": [6, "all"],
        "seeds": [0],
        "methods": [
            {"strategy": "scratch", "backbone": "scratch_cnn"},
            {"strategy": "features_logreg", "backbone": "scratch_cnn", "name": "features_logreg/random_cnn"},
        ],
    }
    config.update(changes)
    return config


def write_config(tmp_path: Path, config: dict, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --- config checks: before any training, naming the key ------------------------------------------
@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"methods": [{"strategy": "transfer", "backbone": "scratch_cnn"}]},
         r"methods\[0\]\.strategy: unknown strategy 'transfer'; known: .*features_logreg.*linear_probe.*prototype"),
        ({"train_samples": [50, 0]}, r"train_samples: 0 is not a positive integer or 'all'"),
        ({"train_samples": [-5]}, r"train_samples: -5 is not a positive integer or 'all'"),
        ({"train_samples": []}, r"train_samples is empty"),
        ({"seeds": []}, r"seeds is empty"),
        ({"seeds": [-1]}, r"seeds must be >= 0, got -1"),
        ({"methods": []}, r"methods is empty"),
        ({"epochs": 3}, r"unknown key 'epochs'"),
        ({"trainer": {"max_epoch": 3}}, r"unknown key 'trainer\.max_epoch'; did you mean 'trainer\.max_epochs'\?"),
        ({"data": {"rooot": "x"}}, r"unknown key 'data\.rooot'; did you mean 'data\.root'\?"),
        ({"model": {"lr": "fast"}}, r"model\.lr: 'fast' is not a number"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn", "lr": 0.1}]},
         r"unknown key 'methods\[0\]\.lr'; a scratch method accepts: backbone, data, early_stopping, model, name, strategy, trainer"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn", "model": {"lrr": 0.1}}]},
         r"methods\[0\]\.model: unknown key 'lrr'; did you mean 'lr'\?"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn", "model": {"lr": "fast"}}]},
         r"methods\[0\]\.model: lr: .*fast"),
        ({"methods": [{"strategy": "scratch", "backbone": "alexnet"}]}, r"methods\[0\]\.backbone: unknown backbone 'alexnet'"),
        ({"methods": [{"strategy": "scratch", "backbone": "resnet18", "weights": "IMAGENET1K_V1"}]},
         r"methods\[0\]: strategy scratch starts from random weights"),
        ({"methods": [{"strategy": "linear_probe", "backbone": "resnet18", "model": {"freeze": "first:2"}}]},
         r"methods\[0\]\.model\.freeze: strategy linear_probe always uses freeze 'all'"),
        ({"methods": [{"strategy": "finetune", "backbone": "resnet18", "model": {"freeze": "all"}}]},
         r"methods\[0\]\.model\.freeze: 'all' freezes every stage; that is strategy linear_probe"),
        ({"methods": [{"strategy": "features_logreg", "backbone": "resnet18", "logreg": {"Cee": 1}}]},
         r"methods\[0\]\.logreg: unknown key 'Cee'"),
        ({"methods": [{"strategy": "features_logreg", "backbone": "resnet18", "model": {"lr": 1}}]},
         r"methods\[0\]\.model\.lr: this strategy's model accepts backbone_args, input_size"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn", "trainer": {"logger": False}}]},
         r"methods\[0\]\.trainer\.logger cannot be set in a sweep"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn", "logreg": {"C": 1}}]},
         r"unknown key 'methods\[0\]\.logreg'; a scratch method accepts"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn", "model": {"head_dropout": 1.5}}]},
         r"methods\[0\]\.model\.head_dropout must be in \[0, 1\), got 1.5"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn", "trainer": {"max_epochs": -5}}]},
         r"methods\[0\]\.trainer\.max_epochs must be >= -1, got -5"),
        ({"checkpoints": "some"}, r"checkpoints: "),
        ({"num_threads": 0}, r"num_threads must be > 0, got 0"),
        ({"methods": [{"strategy": "scratch", "backbone": "scratch_cnn"}, {"strategy": "scratch", "backbone": "scratch_cnn"}]},
         r"methods\[1\] and methods\[0\] are both called 'scratch/scratch_cnn'"),
    ],
)
def test_bad_sweep_config_names_the_key(change, pattern, tmp_path):
    with pytest.raises(ConfigError, match=pattern):
        load_sweep_config(tiny_sweep(tmp_path, **change))


def test_strategy_recipe_between_shared_and_own_settings(tmp_path):
    """Shared sections, then the strategy's recipe, then the method's own sections."""
    methods = [
        {"strategy": "linear_probe", "backbone": "scratch_cnn"},
        {"strategy": "linear_probe", "backbone": "scratch_cnn", "name": "adam", "model": {"optimizer": "adam"},
         "data": {"batch_size": 8}},
        {"strategy": "features_logreg", "backbone": "scratch_cnn", "logreg": {"C": 0.5}},
    ]
    cfg = load_sweep_config(tiny_sweep(tmp_path, methods=methods, model={"lr": 0.5, "head_c": 3.0, "input_size": 48}))
    probe, adam, logreg = cfg.methods
    assert probe.model["optimizer"] == "lbfgs" and probe.model["head_c"] == 1.0 and probe.model["lr"] == 0.5
    assert probe.model["freeze"] == "all" and probe.data == {"batch_size": "all"}
    assert adam.model["optimizer"] == "adam" and adam.data == {"batch_size": 8}
    assert probe.trainer["max_epochs"] == 1 and probe.trainer["enable_progress_bar"] is False
    assert logreg.model == {"input_size": 48, "freeze": "all"} and logreg.options == {"logreg": {"C": 0.5, "max_iter": 1000}}


def test_bad_config_fails_before_training_with_one_line(tmp_path, capsys):
    config = write_config(tmp_path, tiny_sweep(tmp_path, train_samples=[0, 10]))
    assert main(["sweep", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"facetransfer: error: {config}: train_samples: 0 is not a positive integer or 'all'" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "results").exists()  # nothing was run or written

    config = write_config(tmp_path, tiny_sweep(tmp_path))
    assert main(["sweep", "--config", str(config), "--data.rooot", "/x"]) == 2
    assert "unknown option --data.rooot; did you mean 'data.root'?" in capsys.readouterr().err
    # options that only fail when built (a bad trainer value, missing weights) still fail before any cell
    assert main(["sweep", "--config", str(config), "--trainer.accelerator", "tpu"]) == 2
    assert "methods[0] (scratch/scratch_cnn):" in capsys.readouterr().err
    missing = tiny_sweep(tmp_path, model={}, methods=[{"strategy": "features_logreg", "backbone": "mobilenet_v2", "weights": "IMAGENET1K_V1"}])
    assert main(["sweep", "--config", str(write_config(tmp_path, missing))]) == 2
    assert "mobilenet_v2-b0353104.pth is not in the cache" in capsys.readouterr().err
    assert not (tmp_path / "results" / "results.csv").exists()


def test_dotted_overrides_several_configs_and_shipped_configs(tmp_path, capsys):
    cfg = load_sweep_config(
        REPO / "configs" / "experiments" / "offline_lfw.yaml",
        ["--data.root", str(tmp_path), "--trainer.max_epochs=3", "--seeds", "[0, 1]", "--model.input_size", "112"],
    )
    assert cfg.data["root"] == str(tmp_path) and cfg.seeds == [0, 1]
    assert cfg.methods[0].trainer["max_epochs"] == 3 and cfg.methods[2].model["input_size"] == 112
    assert cfg.methods[0].model["lr"] == 1e-3  # a method's own value wins over the shared one
    assert cfg.train_samples == [50, 100, 250, 500, "all"]
    strategies = {m.strategy for m in cfg.methods}
    assert strategies == {"scratch", "linear_probe", "finetune", "features_logreg", "prototype"}
    # a second --config file merges over the first
    extra = write_config(tmp_path, {"trainer": {"max_epochs": 7}, "seeds": [4]}, "extra.yaml")
    cfg = load_sweep_config([REPO / "configs" / "experiments" / "demo.yaml", extra])
    assert cfg.seeds == [4] and cfg.methods[0].trainer["max_epochs"] == 7 and cfg.name == "demo"
    # --print_config prints the merged config and exits
    with pytest.raises(SystemExit):
        main(["sweep", "--config", str(REPO / "configs" / "experiments" / "demo.yaml"), "--trainer.max_epochs", "2",
              "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_epochs"] == 2 and printed["methods"][0]["strategy"] == "scratch"
    for path in sorted((REPO / "configs" / "experiments").glob("*.yaml")):  # every shipped experiment loads
        cfg = load_sweep_config(path)
        assert cfg.methods and cfg.name == path.stem
    paper = load_sweep_config(REPO / "configs" / "experiments" / "paper_lfw.yaml")
    assert {m.backbone for m in paper.methods if m.strategy != "scratch"} == {"vgg16", "resnet50"}
    assert all(m.weights == "IMAGENET1K_V1" for m in paper.methods if m.strategy != "scratch")


def test_dry_run_lists_cells_and_only_selects_methods(tmp_path, capsys):
    config = write_config(tmp_path, tiny_sweep(tmp_path))
    assert main(["sweep", "--config", str(config), "--dry_run", "--only", "features_logreg"]) == 0
    out = capsys.readouterr().out
    assert "grid: 2 cells = 1 methods x 2 sizes [6, 30]" in out
    assert "would run: features_logreg/random_cnn N=6 seed=0" in out and "scratch/" not in out
    assert not (tmp_path / "results" / "results.csv").exists()
    assert main(["sweep", "--config", str(config), "--only", "finetune"]) == 2
    assert "--only: no method or strategy 'finetune' in this sweep; known: features_logreg, " in capsys.readouterr().err


def test_cell_split_equals_the_datamodule_split(tmp_path):
    """The sweep's N-subsets are the DataModule's nested subsets (same test set for every N)."""
    import facetransfer as ft

    args = {"dataset_args": {"num_identities": 5, "images_per_identity": 9, "image_size": 40}, "seed": 3, "num_workers": 0}
    pool = ft.FaceDataModule("synthetic", **args).manifest
    for n in (4, 11):
        direct = ft.FaceDataModule("synthetic", train_samples=n, **args).manifest
        cell = pool.subset(n)
        assert cell.train == direct.train and cell.test == direct.test == pool.test and cell.val == direct.val
        assert cell.settings == direct.settings


def test_balanced_eval_keeps_the_same_number_per_identity():
    from collections import Counter

    from facetransfer.data.sources import FaceRecord
    from facetransfer.data.split import make_split

    records = [FaceRecord(f"p{i}", f"p{i}/{j}.jpg") for i, n in enumerate((10, 20, 40)) for j in range(n)]
    split = make_split(records, seed=1)
    assert Counter(label for _, label in split.test) == {0: 2, 1: 4, 2: 8}
    balanced = make_split(records, seed=1, balanced_eval=True)
    assert Counter(label for _, label in balanced.test) == {0: 2, 1: 2, 2: 2}
    assert Counter(label for _, label in balanced.val) == {0: 1, 1: 1, 2: 1}
    assert set(balanced.test) <= set(split.test) and balanced.train == split.train
    assert balanced.settings["balanced_eval"] is True


# --- end to end -------------------------------------------------------------------------------------
def test_tiny_sweep_end_to_end_then_resume_and_report(tmp_path, capsys):
    config = write_config(tmp_path, tiny_sweep(tmp_path, train_samples=[6, "all", 10_000]))
    assert main(["sweep", "--config", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train_samples 10000 is more than the training pool of 30 images: capped to 30" in out
    assert "grid: 4 cells = 2 methods x 2 sizes [6, 30]" in out

    results = tmp_path / "results"
    rows = read_rows(results / "results.csv")
    assert [(r["method"], r["train_samples"]) for r in rows] == [
        ("scratch/scratch_cnn", "6"), ("features_logreg/random_cnn", "6"),
        ("scratch/scratch_cnn", "30"), ("features_logreg/random_cnn", "30"),
    ]
    for r in rows:
        assert r["dataset"] == "synthetic" and r["identities"] == "6" and r["test_images"] == "12" and r["seed"] == "0"
        assert 0 <= float(r["test_top1"]) <= float(r["test_top5"]) <= 1 and 0 <= float(r["test_macro_f1"]) <= 1
        assert float(r["train_seconds"]) > 0 and r["device"].startswith("cpu") and r["weights"] == "none"
    # every Lightning cell logged to TensorBoard and kept its best checkpoint only
    cell_dir = results / "logs" / "scratch_scratch_cnn" / "n6-seed0"
    assert list(cell_dir.glob("events.out.tfevents.*")) and (cell_dir / "split.json").is_file()
    assert [p.name for p in cell_dir.rglob("*.ckpt")] and not list(cell_dir.rglob("last.ckpt"))

    # the report: table printed, PNG written, figure + table in TensorBoard
    assert "| scratch/scratch_cnn | scratch | scratch_cnn | none |" in out and "N=30 (all)" in out
    assert f"plot:    {results / 'accuracy_vs_n.png'}" in out
    png = results / "accuracy_vs_n.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(results / "logs" / "report"))
    events.Reload()
    assert FIGURE_TAG in events.Tags()["images"]
    assert any(TABLE_TAG in tag for tag in events.Tags()["tensors"])
    # every cell is one row of TensorBoard's HParams dashboard: its settings and test metrics
    sessions = sorted((results / "logs").glob("*/*/hparams"))
    assert len(sessions) == len(list(csv.DictReader(open(results / "results.csv"))))
    for session in sessions:
        events = EventAccumulator(str(session))
        events.Reload()
        assert "_hparams_/session_start_info" in events.summary_metadata
        start = events.summary_metadata["_hparams_/session_start_info"].plugin_data.content
        assert b"strategy" in start and b"train_samples" in start
        assert "cell/test_top1" in events.Tags()["scalars"]

    # a rerun skips every finished cell; extending the grid runs only the new cells
    assert main(["sweep", "--config", str(config), "--no-progress", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "4 already in" in out and "0 to run" in out
    assert len(read_rows(results / "results.csv")) == 4
    assert main(["sweep", "--config", str(config), "--no-progress", "--train_samples", "[6, 12, all]"]) == 0
    assert "4 already in" in (out := capsys.readouterr().out) and "2 to run" in out
    rows = read_rows(results / "results.csv")
    assert len(rows) == 6 and len({(r["method"], r["train_samples"], r["seed"]) for r in rows}) == 6

    # changed settings are refused instead of mixed into the same table
    assert main(["sweep", "--config", str(config), "--model.lr", "0.5"]) == 2
    assert "method 'scratch/scratch_cnn' has results in" in capsys.readouterr().err
    # `facetransfer report DIR` remakes the report from results.csv alone
    (results / "report.md").unlink()
    assert main(["report", str(results)]) == 0
    assert "N=12" in capsys.readouterr().out and (results / "report.md").is_file()


def test_features_logreg_extracts_once_then_reads_the_cache(tmp_path):
    config = load_sweep_config(tiny_sweep(tmp_path, methods=tiny_sweep(tmp_path)["methods"][1:], train_samples=[6, 12]))
    first = run_sweep(config, progress=False, report=False, echo=lambda _: None)
    assert first.ran and first.features_computed == 1 and first.features_loaded == 0
    cache_files = list(config.feature_cache_dir.glob("*.pt"))
    assert len(cache_files) == 1
    stamp = cache_files[0].stat().st_mtime_ns

    more = load_sweep_config(tiny_sweep(tmp_path, methods=tiny_sweep(tmp_path)["methods"][1:], train_samples=[6, 12, 18]))
    second = run_sweep(more, progress=False, report=False, echo=lambda _: None)
    assert [key[1] for key in second.ran] == [18] and second.features_computed == 0 and second.features_loaded == 1
    assert cache_files[0].stat().st_mtime_ns == stamp


# --- killing a sweep --------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_in_the_middle_then_rerun_gives_one_row_per_cell(tmp_path):
    config = tiny_sweep(tmp_path, train_samples=[6, 12, 18, "all"], methods=[{"strategy": "scratch", "backbone": "scratch_cnn"}])
    path = write_config(tmp_path, config)
    results = tmp_path / "results" / "results.csv"
    cmd = [sys.executable, "-m", "facetransfer.sweep", "--config", str(path), "--no-progress", "--no-report"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (results.is_file() and read_rows(results)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    partial = read_rows(results)
    assert 1 <= len(partial) < 4  # killed in the middle of the grid

    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(partial)} already in" in done.stdout
    rows = read_rows(results)
    keys = [(r["method"], r["train_samples"], r["seed"]) for r in rows]
    assert len(keys) == 4 and len(set(keys)) == 4
    assert rows[: len(partial)] == partial  # finished rows are kept as they were
    assert ResultsTable(results).finished_keys() == {("scratch/scratch_cnn", n, 0) for n in (6, 12, 18, 30)}


def test_the_report_plot_draws_chance(tmp_path):
    from facetransfer.sweep.report import accuracy_figure

    rows = [{"method": "scratch/scratch_cnn", "strategy": "scratch", "backbone": "scratch_cnn", "weights": None,
             "train_samples": n, "seed": 0, "identities": 16, "dataset": "synthetic", "test_top1": 0.0625}
            for n in (16, 48)]
    (ax,) = accuracy_figure(tmp_path, rows).axes
    chance = [line for line in ax.get_lines() if line.get_label() == "chance (1 / 16)"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [6.25, 6.25] and chance[0].get_linestyle() == ":"
    assert "chance (1 / 16)" in [t.get_text() for t in ax.get_legend().get_texts()]
