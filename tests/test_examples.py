"""Every example runs (with small settings)."""

from __future__ import annotations

import runpy
import sys

from facetransfer.models import registry

from .fakes import REPO


def run_example(name: str, args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(REPO / "examples" / name), run_name="__main__")


def test_linear_probe_example(imagenet_mobilenet, tmp_path, monkeypatch, capsys):
    run_example("linear_probe.py", ["--epochs", "2", "--input-size", "64", "--out", str(tmp_path)], monkeypatch)
    out = capsys.readouterr().out
    assert "mobilenet_v2 (IMAGENET1K_V1) linear probe on synthetic: 40 identities" in out and "test top-1" in out


def test_linear_probe_example_on_orl_random_init(orl_root, tmp_path, monkeypatch, capsys):
    args = ["--dataset", "folder", "--root", str(orl_root), "--weights", "none", "--epochs", "2",
            "--input-size", "64", "--out", str(tmp_path)]
    run_example("linear_probe.py", args, monkeypatch)
    assert "linear probe on folder: 40 identities" in capsys.readouterr().out


def test_plugin_backbone_example(tmp_path, monkeypatch, capsys):
    try:
        run_example("plugin_backbone.py", ["--epochs", "2", "--identities", "4", "--out", str(tmp_path)], monkeypatch)
    finally:
        registry.BACKBONES.builders.pop("tiny_convnet", None)
    assert "tiny_convnet from scratch: test top-1" in capsys.readouterr().out
