"""Open-set sweeps: cells over training people whose test verifies people never trained on; the verify: pairs file
next to top-1 on closed-set sweeps; results.csv of earlier versions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from facetransfer.cli import main
from facetransfer.errors import ConfigError
from facetransfer.sweep import ResultsTable, load_sweep_config, run_sweep
from facetransfer.sweep.report import write_report

from .fakes import REPO, make_lfw_tree
from .test_sweep import TINY_BACKBONE, read_rows, tiny_sweep

VERIFY_COLUMNS = ("test_verify_acc", "test_verify_auc", "test_verify_tar")
PAIRS_COLUMNS = ("pairs_verify_acc", "pairs_verify_auc", "pairs_verify_tar")


def tiny_openset(tmp_path: Path) -> dict:
    """configs/experiments/openset_lfw.yaml on 14 synthetic people: its frozen baseline and its ArcFace fine-tuning
    on a tiny CNN, one epoch, K = 3 and all training people."""
    config = yaml.safe_load((REPO / "configs" / "experiments" / "openset_lfw.yaml").read_text())
    data = {k: v for k, v in config["data"].items() if k not in ("root", "cache", "face_crop")}
    data.update(dataset="synthetic", dataset_args={"num_identities": 14, "images_per_identity": 6, "image_size": 40},
                num_workers=0, batch_size=16, val_fraction=0.2, test_fraction=0.3)
    methods = [{k: v for k, v in m.items() if k != "weights"} | {"backbone": "scratch_cnn", "name": m["name"].split("/")[0]}
               for m in config["methods"] if m["name"] in ("frozen/mobilenet_v2", "finetune-arcface/mobilenet_v2")]
    methods[1]["early_stopping"] = {"patience": 3}  # monitors the validation people's verification
    return config | {"output_dir": str(tmp_path / "results"), "data": data, "train_identities": [3, "all"],
                     "model": {"backbone_args": TINY_BACKBONE, "input_size": 32, "lr": 1.0e-3},
                     "trainer": {"max_epochs": 1, "accelerator": "cpu"}, "methods": methods}


def test_open_set_sweep_over_training_people(tmp_path, capsys):
    config = tiny_openset(tmp_path)
    assert config["data"]["split_by"] == "identity"
    path = tmp_path / "openset.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["sweep", "--config", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    results = tmp_path / "results"
    rows = read_rows(results / "results.csv")
    everyone = rows[-1]["identities"]  # the training people of the split
    assert [(r["method"], r["train_identities"], r["identities"]) for r in rows] == [
        ("frozen", "3", "3"), ("finetune-arcface", "3", "3"), ("frozen", everyone, everyone),
        ("finetune-arcface", everyone, everyone),
    ]
    assert int(everyone) > 3
    for row in rows:
        assert row["test_top1"] == row["test_top5"] == row["test_macro_f1"] == ""  # no classes of unseen people
        assert all(0 <= float(row[c]) <= 1 for c in VERIFY_COLUMNS) and all(row[c] == "" for c in PAIRS_COLUMNS)
    frozen = [r for r in rows if r["method"] == "frozen"]
    assert frozen[0]["test_verify_acc"] == frozen[1]["test_verify_acc"]  # the same features, the same seeded pairs
    assert int(rows[0]["train_samples"]) < int(rows[-1]["train_samples"]) == int(rows[-1]["pool_size"])
    # the cells' folders and splits: the first 3 training people, the same unseen test people for every K
    cell = results / "logs" / "finetune-arcface"
    small, every = (json.loads((cell / f"people{k}-seed0" / "split.json").read_text()) for k in ("3", everyone))
    assert len(small["classes"]) == 3 and small["test"] == every["test"] and len(small["train"]) < len(every["train"])
    assert "K=3 people seed=0" in out and "grid: 4 cells = 2 methods x 2 numbers of people [3, " in out
    report = (results / "report.md").read_text()
    assert "Pair verification accuracy (%) of the test people" in report and "| K=3 |" in report
    assert "top-1" not in report and f"3/{everyone} training people" in report
    assert (results / "accuracy_vs_n.png").read_bytes()[:4] == b"\x89PNG"


def write_view1_pairs(path: Path, same: list[tuple[str, int, int]], different: list[tuple[str, int, str, int]]) -> Path:
    """An LFW View 1 pairs file (pairsDevTest.txt's format)."""
    assert len(same) == len(different)
    lines = [str(len(same))] + [f"{n}\t{i}\t{j}" for n, i, j in same] + ["\t".join(map(str, d)) for d in different]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_verify_pairs_next_to_top1_and_its_people_are_never_trained_on(tmp_path):
    people = {f"Person_{c}": 6 for c in "ABCDEF"} | {"Pair_X": 5, "Pair_Y": 5}
    root = make_lfw_tree(tmp_path / "lfw", people, size=48)
    same = [(name, i, j) for name in ("Pair_X", "Pair_Y") for i, j in ((1, 2), (1, 3), (2, 4), (3, 5), (4, 5))]
    different = [("Pair_X", i, "Pair_Y", j) for i, j in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (1, 2), (2, 3),
                                                       (3, 4), (4, 5), (5, 1))]
    pairs = write_view1_pairs(tmp_path / "pairs.txt", same, different)
    changes = {"data": {"dataset": "lfw", "root": str(root), "face_crop": 1.0, "batch_size": 16, "num_workers": 0},
               "train_samples": ["all"], "verify": {"pairs": str(pairs)}}
    config = load_sweep_config(tiny_sweep(tmp_path, **changes))
    assert config.data["exclude_identities_in"] == str(pairs)
    run_sweep(config, progress=False, echo=lambda _: None)
    rows = ResultsTable(config.output_dir / "results.csv").rows()
    assert len(rows) == 2
    for row in rows:
        assert row["identities"] == 6 and 0 <= row["test_top1"] <= 1 and row["test_verify_acc"] is None
        assert all(0 <= row[c] <= 1 for c in PAIRS_COLUMNS)
    split = json.loads(next((config.output_dir / "logs").rglob("split.json")).read_text())
    assert not {c for c in split["classes"] if c.startswith("Pair_")}
    assert not [k for part in ("train", "val", "test") for k, _ in split[part] if k.startswith("Pair_")]
    report = (config.output_dir / "report.md").read_text()
    assert "Test top-1 accuracy" in report and "accuracy (%) of the people of the verify: pairs file" in report
    # the section is part of what the rows mean: another far is another sweep
    changed = tiny_sweep(tmp_path, **changes | {"verify": {"pairs": str(pairs), "far": 0.01}})
    with pytest.raises(ConfigError, match=r"has results in .* made with other settings \(verify\.far: 0\.001 -> 0\.01\)"):
        run_sweep(load_sweep_config(changed), progress=False, echo=lambda _: None)
    other = tiny_sweep(tmp_path, **changes | {"data": changes["data"] | {"exclude_identities_in": str(tmp_path / "o.txt")}})
    with pytest.raises(ConfigError, match=r"data\.exclude_identities_in: .*o\.txt is not verify\.pairs"):
        load_sweep_config(other)


@pytest.mark.parametrize("change, message", [
    ({"train_samples": [5, 10], "train_identities": [2, "all"]}, r"train_samples \[5, 10\] and train_identities \[2, "),
    ({"verify": {"pairs": "no/such/pairs.txt"}}, r"verify\.pairs: no/such/pairs\.txt is not a file"),
    ({"verify": {"far": 0.1}}, r"verify\.pairs is missing"),
    ({"verify": {"pairs": __file__, "far": 1.5}}, r"verify\.far"),
])
def test_the_new_keys_are_checked(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(tiny_sweep(tmp_path, **change))


OLD_FIELDS = ["dataset", "method", "strategy", "backbone", "weights", "train_samples", "seed", "identities",
              "test_images", "pool_size", "test_top1", "test_top5", "test_macro_f1", "train_seconds", "cell_seconds",
              "device", "finished_at"]


def test_results_of_earlier_versions_still_read_and_report(tmp_path):
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, OLD_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(dict(zip(OLD_FIELDS, ["synthetic", "scratch/scratch_cnn", "scratch", "scratch_cnn", "none", 6, 0,
                                              6, 12, 30, 0.5, 0.9, 0.4, 1.5, 2.0, "cpu", "2026-12-01T10:00:00+00:00"])))
    table = ResultsTable(path)
    (row,) = table.rows()
    assert row["test_top1"] == 0.5 and row["train_identities"] is None and row["test_verify_acc"] is None
    assert table.finished_keys() == {("scratch/scratch_cnn", 6, 0)}
    report = write_report(tmp_path)
    assert "| scratch/scratch_cnn | scratch | scratch_cnn | none | 50.0 |" in report.markdown
    assert "erification" not in report.markdown
    assert table.append({**row, "train_samples": 12, "test_verify_acc": None})  # rewritten with today's columns
    assert [r["train_samples"] for r in table.rows()] == [6, 12] and "test_verify_acc" in path.read_text()
