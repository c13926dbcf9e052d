"""The alignment benchmarks and example run end to end on a few real LFW images (speed is not asserted)."""

from __future__ import annotations

import json
import runpy
import shutil

import pytest
from PIL import Image

from .fakes import REPO, shared

pytestmark = pytest.mark.shared_data


def _script(path: str):
    return runpy.run_path(str(REPO / path))["main"]


def test_align_speed_benchmark_smoke(tmp_path, mtcnn_weights, capsys):
    import torch

    root = shared("lfw-devtrain", "lfw")
    threads = torch.get_num_threads()
    rows = _script("benchmarks/align_speed.py")(["--root", str(root), "--images", "6", "--batch-sizes", "2,4",
                                                  "--threads", "1", "--repeats", "1", "--out", str(tmp_path)])
    assert [r["batch_size"] for r in rows] == [2, 4]
    assert all(r["best_img_s"] > 0 and r["no_face"] == 0 and r["image_size"] == [150, 150] for r in rows)
    assert json.loads((tmp_path / "align_speed.json").read_text()) == rows
    assert "| 6 x [150, 150] | 2 | 1 |" in capsys.readouterr().out
    assert torch.get_num_threads() == threads  # in-process: torch's thread count is restored


def test_verify_aligned_benchmark_smoke(tmp_path, mtcnn_weights, dlib_face_api, capsys):
    """Ten same and ten different pairs of real LFW images: aligned chips verify as well as the centre crop."""
    source = shared("lfw-devtrain")
    lines = [l.split() for l in (source / "pairsDevTrain.txt").read_text().splitlines()[1:]]
    same, different = lines[:10], lines[1100:1110]
    root = tmp_path / "lfw"
    keys = set()
    for parts in same + different:
        names = [(parts[0], parts[1]), (parts[0], parts[2])] if len(parts) == 3 else [(parts[0], parts[1]), (parts[2], parts[3])]
        for name, index in names:
            key = f"{name}/{name}_{int(index):04d}.jpg"
            keys.add(key)
            (root / "lfw" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(source / "lfw" / key, root / "lfw" / key)
    (root / "pairs.txt").write_text("10\n" + "\n".join("\t".join(p) for p in same + different) + "\n")
    rows = _script("benchmarks/verify_aligned.py")(["--root", str(root), "--pairs", "pairs.txt", "--variant", "original",
                                                     "--centre-crop", "0.45", "--out", str(tmp_path / "out")])
    assert [r["alignment"] for r in rows] == ["centre crop 0.45", "mtcnn + dlib 150 px, pick largest_central"]
    assert rows[1]["images"] == len(keys) and rows[1]["accuracy"] >= 0.9 and rows[1]["auc"] >= rows[0]["auc"] - 0.05
    assert Image.open(tmp_path / "out" / "original-dlib" / same[0][0] / f"{same[0][0]}_{int(same[0][1]):04d}.jpg").size == (150, 150)
    assert "| original | mtcnn + dlib 150 px, pick largest_central | no |" in capsys.readouterr().out


def test_alignment_grid_example(tmp_path, mtcnn_weights, capsys):
    out = _script("examples/alignment_grid.py")(["--root", str(shared("lfw-devtrain")), "--out", str(tmp_path / "g.png"),
                                                  "--tile", "40", "--people", "2"])
    assert Image.open(out).size == (2 * 44 + 4, 4 * 44 + 4)
    assert "rows original, aligned, deep-funneled, aligned" in capsys.readouterr().out


def test_verify_aligned_dlib_reference_needs_dlib_and_its_files(tmp_path):
    """--dlib-models fails in one line before any work: without the dlib module, or without dlib's model files."""
    from facetransfer.errors import DataError

    (tmp_path / "lfw").mkdir()
    with pytest.raises(DataError) as err:
        _script("benchmarks/verify_aligned.py")(["--root", str(tmp_path / "lfw"), "--variant", "original",
                                                 "--dlib-models", str(tmp_path)])
    message = str(err.value)
    assert "\n" not in message
    try:
        import dlib  # noqa: F401
    except ImportError:
        assert "needs the dlib module (pip install dlib-bin)" in message
    else:
        assert f"--dlib-models {tmp_path}: missing dlib_face_recognition_resnet_model_v1.dat" in message
