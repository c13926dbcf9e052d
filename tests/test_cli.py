"""The `facetransfer` command: the three paper strategies from YAML, and clear errors."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from facetransfer.cli import main

from .fakes import REPO

QUICK = ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(autouse=True)
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])


def run_fit_then_test(config: str, tmp_path: Path, data_args: list[str], extra: list[str], capsys) -> float:
    args = ["--config", str(REPO / "configs" / config), *data_args, *QUICK, "--trainer.default_root_dir", str(tmp_path)]
    assert main(["fit", *args, *extra]) == 0
    out = capsys.readouterr().out
    ckpt = re.search(r"best checkpoint (\S+\.ckpt)", out).group(1)
    assert main(["test", *args, "--ckpt_path", ckpt]) == 0
    out = capsys.readouterr().out
    return float(re.search(r"test/acc\s+([0-9.]+)", out).group(1))


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "config, extra, minimum",
    [
        ("linear_probe.yaml", ["--trainer.max_epochs", "8"], 0.6),
        ("finetune.yaml", ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"], 0.0),
        ("scratch.yaml", ["--trainer.max_epochs", "1"], 0.0),
    ],
)
def test_paper_strategies_on_orl_subset(config, extra, minimum, orl_root, imagenet_mobilenet, tmp_path, capsys):
    """fit + test from the shipped YAML files on 8 ORL subjects (chance: 0.125)."""
    data = ["--data.dataset", "folder", "--data.root", str(orl_root), "--data.max_identities", "8"]
    acc = run_fit_then_test(config, tmp_path, data, extra, capsys)
    assert minimum <= acc <= 1.0


def test_synthetic_scratch_run_needs_no_files(tmp_path, capsys):
    data = ["--data.dataset_args", "{num_identities: 5, images_per_identity: 8, image_size: 48}"]
    extra = ["--trainer.max_epochs", "1", "--model.backbone_args", "{widths: [8, 16], fc_features: 16, input_size: 32}"]
    acc = run_fit_then_test("scratch.yaml", tmp_path, data, extra, capsys)
    assert 0.0 <= acc <= 1.0
    assert list(tmp_path.rglob("split.json")) and list(tmp_path.rglob("config.yaml"))


def expect_error(args: list[str], capsys, pattern: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert "Traceback" not in err
    return err


def test_unknown_yaml_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  backbone: scratch_cnn\n  learning_rate: 0.1\n")
    err = expect_error(["fit", "--config", str(cfg)], capsys, rf"{cfg}: unknown key 'model.learning_rate'")
    assert err.count("\n") == 1 and "usage:" not in err


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--model.backbone", "alexnet"], r"unknown backbone 'alexnet'; known: .*resnet50"),
        (["--model.freeze", "half"], r"unknown freeze policy 'half'; known: all"),
        (["--data.dataset", "mnist"], r"unknown dataset 'mnist'; known: celeba, folder, lfw, synthetic"),
        (["--data.dataset", "folder", "--data.root", "/no/such/dir"], r"data root /no/such/dir does not exist"),
        (["--data.train_samples", "0"], r"train_samples must be >= 1"),
        (["--data.train_samples", "100000"], r"train_samples=100000 is larger than the training pool"),
    ],
)
def test_bad_input_gives_one_clear_line(args, pattern, tmp_path, capsys):
    base = ["fit", "--config", str(REPO / "configs" / "scratch.yaml"), *QUICK, "--trainer.default_root_dir", str(tmp_path)]
    expect_error([*base, *args], capsys, pattern)


def test_missing_pretrained_weights_explain_import(tmp_path, capsys):
    base = ["fit", "--config", str(REPO / "configs" / "linear_probe.yaml"), *QUICK]
    expect_error(base, capsys, r"mobilenet_v2-b0353104.pth is not in the cache .* facetransfer weights import")


def test_class_path_backbone_from_a_user_module(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_backbones.py").write_text(
        textwrap.dedent(
            '''
            from collections import OrderedDict
            from torch import nn
            from facetransfer import Backbone, Preprocess

            class TinyNet(Backbone):
                def __init__(self, width: int = 8):
                    stages = OrderedDict(conv=nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU()))
                    super().__init__(stages, width, Preprocess(crop_size=32, resize_size=36))
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text(
        textwrap.dedent(
            """
            trainer: {max_epochs: 1}
            model:
              backbone:
                class_path: my_backbones.TinyNet
                init_args: {width: 4}
              lr: 0.01
            data:
              dataset_args: {num_identities: 4, images_per_identity: 6, image_size: 40}
            """
        )
    )
    assert main(["fit", "--config", str(cfg), *QUICK, "--trainer.default_root_dir", str(tmp_path / "run")]) == 0
    ckpt = next((tmp_path / "run").rglob("last.ckpt"))
    state = torch.load(ckpt, weights_only=True)
    assert state["state_dict"]["backbone.stages.conv.0.weight"].shape[0] == 4
    assert state["facetransfer"]["backbone"] == "TinyNet"


def test_tool_commands(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "first:K" in out
    assert main(["weights", "where"]) == 0
    assert "checkpoints" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_training_commands_print_their_help(command, capsys):
    """Every option's help, with its type and default; a docstring's "40 % of" is text, not a format."""
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "--model.backbone_lr_relative" in out and "--data.root" in out and "40 % of its free memory" in out
    assert re.search(r"--model\.lr LR\s+learning rate of the head[^-]*\(type: float,\s+default:\s+0\.0001\)", out)
