"""``PredictionReport``: predict prints a table and writes predictions.csv; ``predict_step``'s top-k."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

import facetransfer as ft
from facetransfer.errors import ConfigError
from facetransfer.io.images import load_rgb
from facetransfer.training.prediction import PredictionReport

from .fakes import make_folder_tree
from .trained import SYNTHETIC, train_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("tiny"), max_epochs=3)


def predict(model, data, tmp_path: Path, report: PredictionReport, logger=False):
    trainer = ft.make_trainer(default_root_dir=tmp_path, logger=logger, enable_progress_bar=False,
                              callbacks=[report], accelerator="cpu")
    return trainer, trainer.predict(model, data)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_writes_table_and_csv(checkpoint, tmp_path, capsys):
    model = ft.FaceClassifier.load_from_checkpoint(checkpoint)
    root = make_folder_tree(tmp_path / "new_photos", identities=3, per_identity=2, size=48)
    data = ft.FaceDataModule("synthetic", dataset_args=SYNTHETIC, num_workers=0, predict_root=str(root), eval_batch_size=4,
                             preprocess=model.preprocess)
    report = PredictionReport(top_k=3)
    _, batches = predict(model, data, tmp_path, report)
    out = capsys.readouterr().out

    rows = read_csv(tmp_path / "predictions.csv")  # no logger: default_root_dir
    assert report.csv_path == tmp_path / "predictions.csv" and len(rows) == 6 * 3
    files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    assert sorted({r["path"] for r in rows}) == files  # full paths under predict_root
    model.eval()
    for path in files:
        ranked = [r for r in rows if r["path"] == path]
        assert [r["rank"] for r in ranked] == ["1", "2", "3"]
        with torch.no_grad():  # the model's own answer on the same image
            probs = model(model.preprocess.eval_transform(data.face_crop)(load_rgb(path))[None]).softmax(1)[0]
        best = probs.topk(3)
        assert [r["identity"] for r in ranked] == [model.class_names[i] for i in best.indices]
        assert [float(r["probability"]) for r in ranked] == pytest.approx(best.values.tolist(), abs=1e-5)
        assert path in out or ("..." + path[-57:]) in out
    assert "image" in out and "decision" in out and "top 3" in out and "wrote 6 x 3 predictions to" in out
    # predict_step still returns what it did, plus the top-k
    first = batches[0]
    assert set(first) >= {"key", "prediction", "label", "confidence", "top_names", "top_probs"}
    assert first["top_probs"].shape == (4, 3) and first["prediction"] == [names[0] for names in first["top_names"]]
    assert torch.equal(first["confidence"], first["top_probs"][:, 0])


def test_unknown_below_and_log_dir(checkpoint, tmp_path, capsys):
    model = ft.FaceClassifier.load_from_checkpoint(checkpoint)
    data = ft.FaceDataModule("synthetic", dataset_args=SYNTHETIC, num_workers=0, preprocess=model.preprocess)  # test split
    everything = PredictionReport(top_k=10)  # more than the 4 identities
    predict(model, data, tmp_path / "a", everything)
    tops = sorted(p.probabilities[0] for p in everything.predictions)
    assert all(len(p.names) == 4 for p in everything.predictions) and len(tops) == 4
    cut = (tops[1] + tops[2]) / 2  # two images below, two above

    report = PredictionReport(top_k=2, unknown_below=cut)
    logger = TensorBoardLogger(tmp_path / "b", name="predict")
    trainer, _ = predict(model, data, tmp_path / "b", report, logger=logger)
    out = capsys.readouterr().out
    assert report.csv_path == Path(trainer.log_dir) / "predictions.csv" and "version_0" in str(report.csv_path)
    rows = read_csv(report.csv_path)
    first = {r["path"]: r for r in rows if r["rank"] == "1"}
    assert sum(r["decision"] == "unknown" for r in first.values()) == 2
    for p in report.predictions:
        assert (first[p.path]["decision"] == "unknown") == (p.probabilities[0] < cut)
        assert first[p.path]["identity"] == p.names[0]  # the model's answer is kept
        second = next(r for r in rows if r["path"] == p.path and r["rank"] == "2")
        assert second["identity"] == p.names[1] and second["decision"] == first[p.path]["decision"]
    assert "2 of 4 images unknown (top probability below" in out


@pytest.mark.parametrize("args, pattern", [
    ({"top_k": 0}, r"top_k must be >= 1"),
    ({"unknown_below": 1.5}, r"unknown_below is a probability in \[0, 1\]"),
    ({"filename": "out/p.csv"}, r"filename must be a file name"),
])
def test_bad_arguments(args, pattern):
    with pytest.raises(ConfigError, match=pattern):
        PredictionReport(**args)


@pytest.mark.shared_data
def test_orl_probe_names_its_test_faces(orl_probe_checkpoint, orl_root, tmp_path):
    """The ORL probe (8 subjects) predicts its 16 held-out images: each answer is the image's folder."""
    model = ft.FaceClassifier.load_from_checkpoint(orl_probe_checkpoint)
    data = ft.FaceDataModule("folder", root=str(orl_root), max_identities=8, num_workers=0, preprocess=model.preprocess)
    report = PredictionReport(top_k=3, unknown_below=0.5)
    predict(model, data, tmp_path, report)
    rows = read_csv(tmp_path / "predictions.csv")
    answers = {r["path"]: r["identity"] for r in rows if r["rank"] == "1"}
    assert len(answers) == 16 and all(Path(path).is_file() for path in answers)
    assert all(name == Path(path).parent.name for path, name in answers.items())


@pytest.mark.shared_data
def test_unknown_below_keeps_the_models_answer_on_orl(orl_probe_checkpoint, orl_root, tmp_path):
    """--unknown_below 0.99: every rank-1 identity is the model's argmax; the decision column says unknown."""
    model = ft.FaceClassifier.load_from_checkpoint(orl_probe_checkpoint).eval()
    data = ft.FaceDataModule("folder", root=str(orl_root), max_identities=8, num_workers=0, preprocess=model.preprocess)
    report = PredictionReport(top_k=3, unknown_below=0.99)
    predict(model, data, tmp_path, report)
    first = [r for r in read_csv(tmp_path / "predictions.csv") if r["rank"] == "1"]
    transform = model.preprocess.eval_transform(data.face_crop)
    with torch.no_grad():
        argmax = [model.class_names[int(model(transform(load_rgb(r["path"]))[None]).argmax())] for r in first]
    assert [r["identity"] for r in first] == argmax
    assert all(r["decision"] == ("unknown" if float(r["probability"]) < 0.99 else r["identity"]) for r in first)
    assert any(r["decision"] == "unknown" for r in first)


def test_predict_from_the_command_line_writes_no_empty_tensorboard_run(checkpoint, tmp_path, capsys):
    from facetransfer.cli import main

    photos = make_folder_tree(tmp_path / "new", identities=2, per_identity=2, size=40)
    copy = tmp_path / "run" / "checkpoints" / "model.ckpt"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(checkpoint.read_bytes())
    assert main(["predict", "--ckpt_path", str(copy), "--data.predict_root", str(photos), "--data.num_workers", "0",
                 "--trainer.enable_progress_bar", "false"]) == 0
    (csv_file,) = (tmp_path / "run" / "predict").rglob("predictions.csv")
    assert len({row["path"] for row in read_csv(csv_file)}) == 4  # in <run>/predict/version_N/
    assert not list((tmp_path / "run" / "predict").rglob("events.out.tfevents.*"))  # nothing for TensorBoard to list
