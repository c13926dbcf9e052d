"""``facetransfer gallery``: enroll / identify / add / remove / show from the command line, and the safe file."""

from __future__ import annotations

import csv
import importlib.util
import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.verification import Gallery

from .fakes import REPO, make_folder_tree
from .trained import train_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def people(tmp_path) -> Path:
    """person_0..person_3, 6 images each (mixed formats)."""
    return make_folder_tree(tmp_path / "people", identities=4, per_identity=6, size=48)


def run(args: list[str], capsys) -> str:
    code = main(["gallery", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def expect_error(args: list[str], capsys, pattern: str) -> None:
    assert main(["gallery", *args]) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert "Traceback" not in err and err.count("\n") == 1


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_enroll_identify_add_remove_show(checkpoint, people, tmp_path, capsys):
    enrolled = tmp_path / "enrolled"  # person_0..person_2 (links to their folders); person_3 stays a stranger
    for k in range(3):
        (enrolled / f"person_{k}").mkdir(parents=True)
        for image in (people / f"person_{k}").iterdir():
            (enrolled / f"person_{k}" / image.name).symlink_to(image)
    gallery_file = tmp_path / "g" / "staff.gallery"
    out = run(["enroll", "--root", str(enrolled), "--out", str(gallery_file), "--ckpt_path", str(checkpoint),
               "--images_per_person", "4", "--match", "mean"], capsys)
    assert "enrolled 3 people, 12 images" in out and f"checkpoint {checkpoint.resolve()}" in out
    assert re.search(r"threshold [0-9.]+: calibrated on the enrolled images, best separation", out)
    threshold = Gallery.read_metadata(gallery_file)["threshold"]

    # the command-line gallery is the Python one: same embeddings, same threshold
    model = ft.FaceClassifier.load_from_checkpoint(checkpoint)
    reference = Gallery(model, match="mean")
    reference.enroll_folder(enrolled, images_per_identity=4)
    assert reference.calibrate() == pytest.approx(threshold, abs=1e-6)
    loaded = Gallery.load(gallery_file, model)
    assert loaded.names == ["person_0", "person_1", "person_2"] and loaded.threshold == threshold
    assert torch.allclose(loaded.embeddings, reference.embeddings, atol=1e-5) and loaded.match == "mean"
    assert loaded.model_source == {"ckpt_path": str(checkpoint.resolve())} and loaded.calibration["target_far"] is None

    probes = [people / "person_0", people / "person_3", people / "person_1" / "4.png"]
    out = run(["identify", "--gallery", str(gallery_file), *map(str, probes), "--csv", str(tmp_path / "m.csv")], capsys)
    rows = read_csv(tmp_path / "m.csv")
    files = [*sorted((people / "person_0").iterdir(), key=lambda p: int(p.stem)),
             *sorted((people / "person_3").iterdir(), key=lambda p: int(p.stem)), people / "person_1" / "4.png"]
    assert [r["path"] for r in rows] == [str(f) for f in files]  # folders in natural order, then files as given
    expected = reference.identify_many(files)
    for row, match in zip(rows, expected):
        assert row["decision"] == (match.name or "unknown") and row["identity"] == match.nearest
        assert float(row["similarity"]) == pytest.approx(match.score, abs=1e-5)
        assert (row["decision"] == "unknown") == (match.score < threshold)
    assert f"13 images: {sum(m.known for m in expected)} named" in out and "wrote" in out

    out = run(["add", "--gallery", str(gallery_file), "--root", str(people)], capsys)  # person_3 + the rest of 0..2
    assert "added 12 images of 4 people (1 new); 12 already enrolled images skipped" in out
    assert Gallery.read_metadata(gallery_file)["counts"] == {f"person_{k}": 6 for k in range(4)}
    out = run(["remove", "--gallery", str(gallery_file), "person_1"], capsys)
    assert "removed person_1; 3 people, 18 images left" in out
    again = Gallery(model, match="mean")
    again.enroll_folder(people, identities=["person_0", "person_2", "person_3"])
    assert Gallery.read_metadata(gallery_file)["threshold"] == pytest.approx(again.calibrate(), abs=1e-6)

    out = run(["show", str(gallery_file)], capsys)
    assert f"{gallery_file}: 3 people, 18 images" in out and "match mean" in out
    assert "person_0 (6), person_2 (6), person_3 (6)" in out and "scratch_cnn, 16-d embeddings" in out


def test_gallery_file_loads_without_pickle(checkpoint, people, tmp_path, capsys, monkeypatch):
    gallery_file = tmp_path / "staff.gallery"
    run(["enroll", "--root", str(people), "--out", str(gallery_file), "--ckpt_path", str(checkpoint),
         "--threshold", "0.5"], capsys)
    assert gallery_file.read_bytes()[8:9] == b"{"  # safetensors: header length, then a JSON header
    from safetensors import safe_open

    with safe_open(str(gallery_file), "pt") as f:
        assert f.metadata()["format"] == "facetransfer.gallery" and sorted(f.keys()) == ["embeddings", "labels"]

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used to read a gallery")

    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    info = Gallery.read_metadata(gallery_file)
    assert info["threshold"] == 0.5 and info["calibration"] is None and info["images"] == 24
    monkeypatch.undo()
    out = run(["show", str(gallery_file)], capsys)
    assert "threshold 0.5000: set by hand" in out


def test_old_torch_gallery_files_are_still_read(checkpoint, people, tmp_path):
    model = ft.FaceClassifier.load_from_checkpoint(checkpoint)
    gallery = Gallery(model, threshold=0.7)
    gallery.enroll_folder(people, images_per_identity=2)
    meta = {"threshold": 0.7, "match": "mean", "model": gallery.embedder.describe()}
    torch.save({"format": "facetransfer.gallery", "version": 1, "names": gallery.names, "embeddings": gallery.embeddings,
                "labels": gallery.labels, "sources": gallery.sources, "meta": __import__("json").dumps(meta)},
               tmp_path / "old.gallery")
    old = Gallery.load(tmp_path / "old.gallery", model)
    assert old.names == gallery.names and torch.equal(old.embeddings, gallery.embeddings) and old.threshold == 0.7


def test_identify_refuses_another_model(checkpoint, people, tmp_path, capsys):
    gallery_file = tmp_path / "staff.gallery"
    run(["enroll", "--root", str(people), "--out", str(gallery_file), "--ckpt_path", str(checkpoint)], capsys)
    other = train_checkpoint(tmp_path / "other", max_epochs=2)  # same network, other weights
    expect_error(["identify", "--gallery", str(gallery_file), str(people), "--ckpt_path", str(other)], capsys,
                 r"staff.gallery was enrolled with other weights \(scratch_cnn, fingerprint \w+\)")
    moved = tmp_path / "moved.ckpt"
    shutil.copy(checkpoint, moved)
    enrolled_with = tmp_path / "enrolled_with.ckpt"
    shutil.copy(checkpoint, enrolled_with)
    run(["enroll", "--root", str(people), "--out", str(tmp_path / "b.gallery"), "--ckpt_path", str(enrolled_with)], capsys)
    enrolled_with.unlink()
    expect_error(["identify", "--gallery", str(tmp_path / "b.gallery"), str(people)], capsys,
                 r"enrolled with the checkpoint .*enrolled_with.ckpt, which does not exist any more; give its new place")
    out = run(["identify", "--gallery", str(tmp_path / "b.gallery"), str(people), "--ckpt_path", str(moved)], capsys)
    assert "24 images:" in out


def test_bad_input_is_one_line(checkpoint, people, tmp_path, capsys):
    g = tmp_path / "g.gallery"
    ck = ["--ckpt_path", str(checkpoint)]
    expect_error(["enroll", "--root", str(tmp_path / "nowhere"), "--out", str(g), *ck], capsys, r"nowhere does not exist")
    expect_error(["enroll", "--root", str(people), "--out", str(g), "--backbone", "scratch_cnn"], capsys,
                 r"--backbone scratch_cnn needs --weights or --weights_path")
    expect_error(["enroll", "--root", str(people), "--out", str(g), "--backbone", "resnet9", "--weights", "X"], capsys,
                 r"unknown backbone 'resnet9'")
    expect_error(["enroll", "--root", str(people), "--out", str(g), *ck, "--target_far", "1.5"], capsys,
                 r"--target_far must be in \[0, 1\)")
    one = tmp_path / "one"
    shutil.copytree(people / "person_0", one / "person_0")
    expect_error(["enroll", "--root", str(one), "--out", str(g), *ck], capsys,
                 r"at least 2 identities .*; or give a fixed --threshold")
    assert not g.exists()
    run(["enroll", "--root", str(people), "--out", str(g), *ck], capsys)
    expect_error(["enroll", "--root", str(people), "--out", str(g), *ck], capsys, r"g.gallery exists; use 'facetransfer gallery add'")
    expect_error(["remove", "--gallery", str(g), "person_0", "carol"], capsys,
                 r"not enrolled in .*g.gallery: carol; enrolled: person_0, person_1, person_2, person_3")
    expect_error(["identify", "--gallery", str(g), str(tmp_path / "missing.jpg")], capsys, r"missing.jpg does not exist")
    expect_error(["add", "--gallery", str(g), "--root", str(people)], capsys, r"every image under .* is already enrolled")
    expect_error(["identify", "--gallery", str(g), str(people), "--weights", "FACE_API"], capsys,
                 r"--weights/--weights_path/--input_size need --backbone")
    (tmp_path / "notes.gallery").write_text("hello")
    expect_error(["show", str(tmp_path / "notes.gallery")], capsys, r"notes.gallery is not a facetransfer gallery file")
    expect_error(["show", str(tmp_path / "none.gallery")], capsys, r"gallery file .*none.gallery does not exist")


# --- ORL acceptance: the command line reproduces examples/gallery.py ---------------------------------
def run_example(args: list[str]) -> dict[str, float]:
    spec = importlib.util.spec_from_file_location("gallery_example", REPO / "examples" / "gallery.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.main(args)


@pytest.mark.shared_data
@pytest.mark.slow
def test_orl_command_line_reproduces_the_example(orl_root, dlib_face_api, tmp_path, capsys):
    """dlib_resnet, match nearest: s1..s35 enroll images 1-5, s36..s40 are strangers.

    To stay fast every subject keeps 7 of its 10 images (the enrolled 5 are unchanged, so is the
    threshold); the example and the command line run on the same folder with the same settings.
    """
    orl = tmp_path / "orl"
    for k in range(1, 41):
        (orl / f"s{k}").mkdir(parents=True)
        for i in range(1, 8):
            (orl / f"s{k}" / f"{i}.pgm").symlink_to(orl_root / f"s{k}" / f"{i}.pgm")
    expected = run_example(["--root", str(orl), "--enroll", "5", "--unknown", "5", "--out", str(tmp_path / "example")])
    capsys.readouterr()

    known = [f"s{k}" for k in range(1, 36)]
    enroll_root = tmp_path / "known"
    enroll_root.mkdir()
    for name in known:
        (enroll_root / name).symlink_to(orl / name)
    gallery_file = tmp_path / "orl.gallery"
    out = run(["enroll", "--root", str(enroll_root), "--out", str(gallery_file), "--backbone", "dlib_resnet",
               "--weights", "FACE_API", "--images_per_person", "5", "--match", "nearest"], capsys)
    threshold = float(re.search(r"threshold ([0-9.]+)", out).group(1))
    probes = [orl / name / f"{i}.pgm" for name in known for i in (6, 7)]
    strangers = [orl / f"s{k}" for k in range(36, 41)]
    run(["identify", "--gallery", str(gallery_file), *map(str, probes + strangers), "--csv", str(tmp_path / "m.csv")], capsys)
    rows = read_csv(tmp_path / "m.csv")
    truth = [Path(r["path"]).parent.name for r in rows]
    known_rows = [(r, t) for r, t in zip(rows, truth) if t in known]
    stranger_rows = [r for r, t in zip(rows, truth) if t not in known]
    assert len(known_rows) == 70 and len(stranger_rows) == 35
    got = {
        "closed_set_top1": sum(r["identity"] == t for r, t in known_rows) / len(known_rows),
        "accepted_correct": sum(r["decision"] == t for r, t in known_rows) / len(known_rows),
        "unknown_rejected": sum(r["decision"] == "unknown" for r in stranger_rows) / len(stranger_rows),
    }
    print(f"ORL gallery from the command line: threshold {threshold:.4f}, {got}; example: {expected}")
    assert threshold == pytest.approx(expected["threshold"], abs=1e-4)
    assert got == {key: pytest.approx(expected[key], abs=1e-9) for key in got}
    assert got["closed_set_top1"] >= 0.85 and got["unknown_rejected"] >= 0.95  # docs/verification.md's ORL numbers


def test_gallery_files_are_checked_field_by_field(checkpoint, people, tmp_path, capsys):
    """A gallery file is input: a threshold out of [-1, 1] is refused, and so is a well-formed safetensors file whose
    fields do not fit together."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    gallery_file = tmp_path / "staff.gallery"
    expect_error(["enroll", "--root", str(people), "--out", str(gallery_file), "--ckpt_path", str(checkpoint),
                  "--threshold", "7"], capsys, r"--threshold must be in \[-1, 1\], got 7")
    assert not gallery_file.exists()
    run(["enroll", "--root", str(people), "--out", str(gallery_file), "--ckpt_path", str(checkpoint)], capsys)
    with pytest.raises(ft.ConfigError, match=r"threshold must be in \[-1, 1\], got 7"):
        Gallery(ft.get_backbone("scratch_cnn", widths=[4], fc_features=4, input_size=32)).threshold = 7
    with safe_open(str(gallery_file), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    probe = str(people / "person_0")

    def damaged(name: str, tensors: dict, **changes) -> Path:
        meta = json.loads(header["meta"])
        for key, value in changes.pop("meta", {}).items():
            meta[key] = value
        if "no_model" in changes:
            meta.pop("model")
        path = tmp_path / name
        save_file(tensors, str(path), metadata={**header, "meta": json.dumps(meta)})
        return path

    cases = [
        (damaged("no_model.gallery", tensors, no_model=True), "it has no model description"),
        (damaged("labels.gallery", {**tensors, "labels": tensors["labels"] + 99}), r"labels outside 0\.\.3 \(it names 4 people\)"),
        (damaged("threshold.gallery", tensors, meta={"threshold": 7}), r"threshold 7 \(a cosine similarity"),
        (damaged("rows.gallery", {**tensors, "labels": tensors["labels"][:-1]}), r"\d+ embeddings, \d+ labels"),
    ]
    for path, problem in cases:
        expect_error(["identify", "--gallery", str(path), probe], capsys,
                     rf"error: {re.escape(str(path))} is a damaged facetransfer gallery file: {problem}")
        expect_error(["show", str(path)], capsys, problem)
