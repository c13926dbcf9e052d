"""Using a trained model from the command line: predict that reports, from any working directory, on moved data."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest

from facetransfer.cli import main

from .fakes import copy_subset

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
PEOPLE = [f"s{i}" for i in range(1, 9)]


@pytest.fixture
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])


@pytest.fixture
def orl_probe_run(orl_root, dlib_face_api, tmp_path, monkeypatch, clean_argv) -> tuple[Path, Path]:
    """A dlib_resnet linear probe fit on 8 ORL people, the data given by a *relative* root."""
    work = tmp_path / "work"
    copy_subset(orl_root, work / "faces", PEOPLE)
    monkeypatch.chdir(work)
    args = ["fit", "--config", str(Path(__file__).parents[1] / "configs" / "linear_probe.yaml"),
            "--model.backbone", "dlib_resnet", "--model.weights", "FACE_API", "--data.dataset", "folder",
            "--data.root", "faces", "--data.num_workers", "0", "--trainer.max_epochs", "5",
            "--trainer.default_root_dir", "runs", *QUIET]
    assert main(args) == 0
    (ckpt,) = (work / "runs").rglob("last.ckpt")
    return work, ckpt


@pytest.mark.shared_data
def test_predict_and_test_from_another_directory_and_moved_data(orl_probe_run, tmp_path, monkeypatch, capsys):
    work, ckpt = orl_probe_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the checkpoint recorded 'faces' relative to work/: it also holds the absolute path
    capsys.readouterr()
    assert main(["test", "--ckpt_path", str(ckpt), "--data.num_workers", "0", *QUIET]) == 0
    out = capsys.readouterr().out
    assert "test/acc       1.0000" in out and f"logs in {ckpt.parents[1] / 'test'}" in out

    new = tmp_path / "new_photos"
    for person in PEOPLE[:3]:
        (new / person).mkdir(parents=True)
        shutil.copy(work / "faces" / person / "10.pgm", new / person / "unseen.pgm")
    assert main(["predict", "--ckpt_path", str(ckpt), "--data.predict_root", str(new), "--data.num_workers", "0",
                 "--top_k", "2", *QUIET]) == 0
    assert "wrote 3 x 2 predictions to" in capsys.readouterr().out
    (table,) = ckpt.parents[1].glob("predict/version_*/predictions.csv")
    rows = list(csv.DictReader(open(table)))
    answers = {Path(r["path"]).parent.name: r["identity"] for r in rows if r["rank"] == "1"}
    assert answers == {p: p for p in PEOPLE[:3]}  # each new photo named after its folder

    moved = tmp_path / "moved_faces"
    shutil.move(str(work / "faces"), moved)
    assert main(["test", "--ckpt_path", str(ckpt), "--data.num_workers", "0", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "16 of 16 test images are missing under" in err and "--data.root" in err and "Traceback" not in err
    assert main(["test", "--ckpt_path", str(ckpt), "--data.root", str(moved), "--data.num_workers", "0", *QUIET]) == 0
    assert "test/acc       1.0000" in capsys.readouterr().out
