"""Two-process DDP on CPU (gloo) through the ``facetransfer`` command, against one process.

With ``data.batch_size`` B per process on 2 processes and 2B in one process, every optimizer
step sees the same images (the sampler shards one (seed, epoch) order over the ranks) with the
same augmentation (seeded per image), and DDP averages the two halves' gradients. What still
differs: BatchNorm statistics of trainable stages (batches of B per process; there is no
SyncBatchNorm on CPU), dropout masks (seeded per rank) and the order of float sums. Hence the
tolerances, also stated in docs/scaling.md:

* linear probe (frozen backbone, features cached, only the head learns): the same head weights
  (to 1e-4) and test accuracy within one test image (``PROBE_TOLERANCE``);
* partly frozen fine-tuning (``first:1``, head lr 0.05, backbone lr 0.001): the frozen stage
  bit-identical, and test accuracy within two test images (``FINETUNE_TOLERANCE``); in one
  process, changing only the dropout seed moves it by as much in less settled settings.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import facetransfer as ft
from facetransfer.cli import main

from .fakes import REPO

pytestmark = pytest.mark.slow

TINY = {"widths": (8, 16), "fc_features": 32, "input_size": 32}
TEST_IMAGES = 24
PROBE_TOLERANCE = 1 / TEST_IMAGES + 1e-6
FINETUNE_TOLERANCE = 2 / TEST_IMAGES + 1e-6
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--data.num_workers", "0"]
PALETTE = [(200, 40, 40), (40, 180, 40), (40, 60, 200), (200, 200, 40), (180, 40, 180), (40, 190, 190)]


@pytest.fixture(scope="module")
def colour_faces(tmp_path_factory) -> Path:
    """6 identities x 18 noisy images told apart by colour, start weights and a config.

    The start weights are a random ``scratch_cnn`` whose BatchNorm statistics were measured on
    these images, as a pretrained backbone's are (random statistics give frozen features that
    barely differ between images).
    """
    folder = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    for k, colour in enumerate(PALETTE):
        for i in range(18):
            pixels = np.clip(np.array(colour) + rng.normal(0, 50, (40, 40, 3)), 0, 255).astype(np.uint8)
            (folder / "faces" / f"id{k}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / "faces" / f"id{k}" / f"{i}.png")
    L.seed_everything(0)
    backbone = ft.get_backbone("scratch_cnn", **TINY)
    data = ft.FaceDataModule("folder", root=str(folder / "faces"), num_workers=0, preprocess=backbone.preprocess)
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the batches
    backbone.train()
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(data.dataset_for("train", train_transform=False), batch_size=32):
            backbone.forward_features(x)
    torch.save(backbone.state_dict(), folder / "start.pth")
    (folder / "ddp.yaml").write_text(
        "seed_everything: 0\n"
        "trainer: {accelerator: cpu, deterministic: true, log_every_n_steps: 1}\n"
        f"model: {{backbone: scratch_cnn, backbone_args: {json.dumps(TINY)}, weights_path: {folder / 'start.pth'}}}\n"
        f"data: {{dataset: folder, root: {folder / 'faces'}}}\n"
    )
    return folder


def run_facetransfer(args: list[str], cwd: Path, timeout: float = 480) -> str:
    """``python -m facetransfer ARGS`` in a new process group (Lightning starts rank 1 from it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "facetransfer", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 1 too
        out, _ = proc.communicate()
        pytest.fail(f"facetransfer {args[0]} under DDP did not finish in {timeout} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return out


def accuracy(out: str) -> float:
    return float(re.search(r"test/acc\s+([0-9.]+)", out).group(1))


def last_checkpoint(root: Path) -> dict:
    path = max(root.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    return torch.load(path, weights_only=True) | {"path": path}


def one_process(colour_faces: Path, root: Path, args: list[str], capsys) -> float:
    """fit + test in this process, batches of 16."""
    run = ["--config", str(colour_faces / "ddp.yaml"), *args, *QUIET, "--data.batch_size", "16", "--trainer.default_root_dir", str(root)]
    assert main(["fit", *run]) == 0
    capsys.readouterr()
    assert main(["test", *run, "--ckpt_path", "last"]) == 0
    return accuracy(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])


def test_linear_probe_ddp_fit_and_test_match_one_process(colour_faces, tmp_path, capsys):
    args = ["--model.freeze", "all", "--model.lr", "0.05", "--trainer.max_epochs", "6"]
    single = one_process(colour_faces, tmp_path / "one", args, capsys)

    two = ["--config", str(colour_faces / "ddp.yaml"), *args, *QUIET, "--data.batch_size", "8",
           "--trainer.default_root_dir", str(tmp_path / "two"), *DDP]
    run_facetransfer(["fit", *two], cwd=tmp_path)
    ddp = accuracy(run_facetransfer(["test", *two, "--ckpt_path", "last"], cwd=tmp_path))

    a, b = last_checkpoint(tmp_path / "one"), last_checkpoint(tmp_path / "two")
    assert a["global_step"] == b["global_step"] == 6 * 5  # 72 images: 5 steps of 16, or of 2 x 8
    for key in ("backbone.head.weight", "backbone.head.bias"):
        assert torch.allclose(a["state_dict"][key], b["state_dict"][key], atol=1e-4), key
    start = torch.load(colour_faces / "start.pth", weights_only=True)
    assert all(torch.equal(b["state_dict"][f"backbone.{k}"], v) for k, v in start.items())  # nothing else moved
    print(f"linear probe: test/acc one process {single:.4f}, two DDP processes {ddp:.4f}")
    assert abs(ddp - single) <= PROBE_TOLERANCE
    assert ddp >= 0.9


def test_partly_frozen_finetune_under_ddp_keeps_frozen_stages_frozen(colour_faces, tmp_path, capsys):
    args = ["--model.freeze", "first:1", "--model.lr", "0.05", "--model.backbone_lr", "0.001", "--trainer.max_epochs", "4"]
    single = one_process(colour_faces, tmp_path / "one", args, capsys)

    run_facetransfer(["fit", "--config", str(colour_faces / "ddp.yaml"), *args, *QUIET, "--data.batch_size", "8",
                      "--trainer.default_root_dir", str(tmp_path / "two"), *DDP], cwd=tmp_path)
    saved = last_checkpoint(tmp_path / "two")
    assert saved["global_step"] == 4 * 5 and saved["facetransfer"]["frozen_stages"] == ["block1"]
    start = torch.load(colour_faces / "start.pth", weights_only=True)
    for key, value in start.items():  # weights and BatchNorm statistics of the frozen stage
        if key.startswith("stages.block1."):
            assert torch.equal(saved["state_dict"][f"backbone.{key}"], value), f"frozen {key} changed under DDP"
    assert not torch.equal(saved["state_dict"]["backbone.stages.block2.0.weight"], start["stages.block2.0.weight"])

    capsys.readouterr()
    assert main(["test", "--ckpt_path", str(saved["path"]), *QUIET, "--trainer.default_root_dir", str(tmp_path)]) == 0
    ddp = accuracy(capsys.readouterr().out)
    print(f"first:1 fine-tune: test/acc one process {single:.4f}, two DDP processes {ddp:.4f}")
    assert abs(ddp - single) <= FINETUNE_TOLERANCE
    assert ddp >= 0.85
