"""Reliability: kills, resumes, atomic checkpoints, determinism, bad images, safe loading, DataLoader workers.

docs/reliability.md tabulates what each test does to a run and what is lost.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.data.sampler import ResumableSampler, SeededDataset
from facetransfer.errors import ConfigError, DataError, WeightsError
from facetransfer.io.checkpoint import atomic_torch_save
from facetransfer.io.images import load_rgb
from facetransfer.models.weights import load_state_dict_file
from facetransfer.training.trainer import AtomicCheckpointIO, find_last_checkpoint

from .fakes import REPO, write_face

TINY = {"widths": (8, 16), "fc_features": 32, "input_size": 32}
SYNTH = {"num_identities": 6, "images_per_identity": 10, "image_size": 40}
SMALL = ft.Preprocess(crop_size=32, resize_size=36, mean=(0.5,) * 3, std=(0.5,) * 3)
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
MODEL_ARGS = ["--model.backbone", "scratch_cnn", "--model.backbone_args", json.dumps(TINY)]


class Pickled:
    """A class a checkpoint must not be able to make us import and build (weights_only)."""


@pytest.fixture(autouse=True)
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])


def tiny_data(**kwargs) -> ft.FaceDataModule:
    args = dict(dataset_args=SYNTH, batch_size=8, num_workers=0,
                preprocess=ft.backbone_preprocess("scratch_cnn", backbone_args=TINY))
    return ft.FaceDataModule("synthetic", **{**args, **kwargs})


def tiny_model(data: ft.FaceDataModule, **kwargs) -> ft.FaceClassifier:
    return ft.FaceClassifier("scratch_cnn", **{"backbone_args": TINY, **kwargs}, class_names=data.class_names,
                             features=data.features)


def tiny_trainer(root, **kwargs) -> L.Trainer:
    args = dict(max_epochs=2, accelerator="cpu", default_root_dir=root, enable_progress_bar=False,
                enable_model_summary=False, log_every_n_steps=1, deterministic=True)
    return ft.make_trainer(**{**args, **kwargs})


def state_of(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


def newest_last(root: Path) -> Path:
    return max(root.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)


def cli_test_acc(ckpt: Path, capsys, *extra: str) -> dict[str, float]:
    """``facetransfer test --ckpt_path`` alone: model, weights and split all come from the file."""
    assert main(["test", "--ckpt_path", str(ckpt), "--data.num_workers", "0", *QUIET,
                 "--trainer.default_root_dir", str(ckpt.parent / "test"), *extra]) == 0
    out = capsys.readouterr().out
    metrics = {k: float(v) for k, v in re.findall(r"(test/\w+)\s+([0-9.]+)", out)}
    assert {"test/acc", "test/loss"} <= metrics.keys(), out
    return metrics


# --- data order: workers, epochs, resume, ranks ---------------------------------------------------
def train_batches(num_workers: int, epochs: int = 2) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    data = tiny_data(num_workers=num_workers, seed=3, preprocess=SMALL)
    loader = data.train_dataloader()
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # what Lightning does at each epoch start
        out.append([(x.clone(), y.clone()) for x, y in loader])
    return out


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
def test_batches_and_augmentation_are_identical_for_0_2_4_workers():
    reference = train_batches(0)
    for workers in (2, 4):
        batches = train_batches(workers)
        for epoch, (got, want) in enumerate(zip(batches, reference)):
            assert len(got) == len(want) == 6
            for (x, y), (x0, y0) in zip(got, want):
                assert torch.equal(y, y0), f"{workers} workers, epoch {epoch}: labels differ"
                assert torch.equal(x, x0), f"{workers} workers, epoch {epoch}: augmented pixels differ"
    labels = [torch.cat([y for _, y in epoch]) for epoch in reference]
    assert not torch.equal(labels[0], labels[1])  # a new order each epoch
    again = train_batches(0, epochs=1)[0]
    assert all(torch.equal(x, x0) for (x, _), (x0, _) in zip(again, reference[0]))  # same seed, same pixels


def test_sampler_resumes_mid_epoch_and_shards_like_one_process():
    data = range(21)
    whole = list(ResumableSampler(data, seed=1, epoch=2))
    assert sorted(i for i, _ in whole) == list(range(21))
    assert list(ResumableSampler(data, seed=1, epoch=2, skip=8)) == whole[8:]  # resume after 2 batches of 4
    resumed = ResumableSampler(data, seed=1, epoch=2, skip=8)
    resumed.set_epoch(3)  # the skip belonged to epoch 2 only
    assert len(list(resumed)) == 21 and list(resumed) != whole
    ranks = [list(ResumableSampler(data, seed=1, epoch=2, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 11
    interleaved = [item for pair in zip(*ranks) for item in pair]
    assert interleaved == whole + whole[:1]  # one rank's batch + the other's = the one-process batch
    assert list(ResumableSampler(data, seed=1, epoch=2, num_replicas=2, rank=1, skip=4)) == ranks[1][4:]
    assert list(ResumableSampler(data, seed=2, epoch=2)) != whole


class Noisy(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3) + index  # like a random transform: draws from torch's global RNG


def test_seeded_items_repeat_their_augmentation_and_leave_the_global_rng_alone():
    data = SeededDataset(Noisy())
    before = torch.get_rng_state()
    a, b, c = data[(1, 123)], data[(1, 123)], data[(1, 124)]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), before)


# --- determinism ------------------------------------------------------------------------------------
def fit_and_test(root: Path, seed: int, data_seed: int = 0) -> tuple[dict, dict, ft.FaceClassifier]:
    L.seed_everything(seed)
    data = tiny_data(seed=data_seed)
    model = tiny_model(data, lr=1e-2)
    trainer = tiny_trainer(root)
    trainer.fit(model, data)
    (result,) = trainer.test(model, data, verbose=False)
    manifest = json.loads((Path(trainer.log_dir) / "split.json").read_text())
    return manifest, result, model


def test_same_config_and_seed_give_the_same_split_and_metrics(tmp_path):
    manifest_a, result_a, model_a = fit_and_test(tmp_path / "a", seed=0)
    manifest_b, result_b, model_b = fit_and_test(tmp_path / "b", seed=0)
    assert manifest_a == manifest_b
    assert result_a == result_b
    assert_same_weights(model_a.state_dict(), model_b.state_dict())
    other = tiny_data(seed=1).manifest.to_dict()
    assert other["test"] != manifest_a["test"] and other["train"] != manifest_a["train"]


# --- resume after SIGKILL ---------------------------------------------------------------------------
PAUSE_PLUGIN = '''
import os, time
from pathlib import Path
from lightning.pytorch.callbacks import Callback


class PauseAt(Callback):
    """Stops (sleeps) after training step `step` when FT_PAUSE_MARKER is set, so a test can SIGKILL it there."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        marker = os.environ.get("FT_PAUSE_MARKER")
        if marker and trainer.global_step == self.step:
            Path(marker).write_text(str(os.getpid()))
            time.sleep(600)
'''

RUN_CONFIG = f"""
seed_everything: 0
trainer:
  max_epochs: 3
  accelerator: cpu
  deterministic: true
  log_every_n_steps: 1
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{every_n_train_steps: 1, save_top_k: -1, save_last: true, filename: "{{step}}"}}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{save_top_k: -1, filename: "end-{{epoch}}"}}  # after each validation
    - class_path: killpoint.PauseAt
      init_args: {{step: 9}}
model:
  backbone: scratch_cnn
  backbone_args: {json.dumps(TINY)}
  lr: 0.01
data:
  dataset: synthetic
  dataset_args: {json.dumps(SYNTH)}
  batch_size: 8
  num_workers: 0
"""  # 42 training images / 8 = 6 steps per epoch; step 9 is in the middle of epoch 1


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    """The uninterrupted run, with a checkpoint after every step (steps/…/{step}.ckpt)."""
    folder = tmp_path_factory.mktemp("clean")
    (folder / "killpoint.py").write_text(PAUSE_PLUGIN)
    (folder / "run.yaml").write_text(RUN_CONFIG)
    sys.path.insert(0, str(folder))
    try:
        assert main(["fit", "--config", str(folder / "run.yaml"), *QUIET, "--trainer.default_root_dir", str(folder / "runs")]) == 0
    finally:
        sys.path.remove(str(folder))
    return folder


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_last_gives_the_uninterrupted_result(clean_run, tmp_path, monkeypatch, capsys):
    config = clean_run / "run.yaml"
    runs = tmp_path / "runs"
    marker = tmp_path / "paused"
    env = {**os.environ, "FT_PAUSE_MARKER": str(marker), "PYTHONPATH": os.pathsep.join([str(clean_run), str(REPO)])}
    cmd = [sys.executable, "-m", "facetransfer", "fit", "--config", str(config), *QUIET, "--trainer.default_root_dir", str(runs)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run did not reach step 9"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no last-minute checkpoint
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    last = newest_last(runs)
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 8 and saved["epoch"] == 1  # mid-epoch: 2 of epoch 1's 6 steps done
    assert not list(runs.rglob("step=9.ckpt"))

    monkeypatch.syspath_prepend(str(clean_run))
    assert main(["fit", "--config", str(config), *QUIET, "--trainer.default_root_dir", str(runs), "--ckpt_path", "last"]) == 0
    assert f"--ckpt_path last is {last}" in capsys.readouterr().out
    resumed, uninterrupted = newest_last(runs), newest_last(clean_run / "runs")
    assert torch.load(resumed, weights_only=True)["global_step"] == 18
    assert_same_weights(state_of(resumed), state_of(uninterrupted))

    # test from the checkpoints alone: no split.json, config or hparams file, no data options
    for leftover in [*runs.rglob("*.json"), *runs.rglob("*.yaml"), *(clean_run / "runs").rglob("*.json")]:
        leftover.unlink()
    assert cli_test_acc(resumed, capsys) == cli_test_acc(uninterrupted, capsys)


@pytest.mark.parametrize("start", ["step=6.ckpt", "end-epoch=0.ckpt"])
def test_resume_at_an_epoch_end_continues_exactly(start, clean_run, tmp_path, monkeypatch):
    """Both end epoch 0 (after its last step; after its validation): the next epoch's order starts afresh."""
    monkeypatch.syspath_prepend(str(clean_run))
    runs = tmp_path / "runs"
    assert main(["fit", "--config", str(clean_run / "run.yaml"), *QUIET, "--trainer.default_root_dir", str(runs),
                 "--ckpt_path", str(next((clean_run / "runs").rglob(start))), "--data.num_workers", "2"]) == 0
    assert_same_weights(state_of(newest_last(runs)), state_of(newest_last(clean_run / "runs")))


def test_checkpoint_holds_everything_test_and_predict_need(clean_run, tmp_path, capsys):
    saved = torch.load(newest_last(clean_run / "runs"), weights_only=True)
    info = saved["facetransfer"]
    assert info["backbone"] == "scratch_cnn" and info["freeze"] == "none" and info["frozen_stages"] == []
    assert info["class_names"] == [f"person_{i:04d}" for i in range(6)] and info["preprocess"]["crop_size"] == 32
    manifest = saved["FaceDataModule"]["manifest"]
    assert manifest["classes"] == info["class_names"] and manifest["source"]["args"]["image_size"] == 40
    assert len(manifest["test"]) == 12 and manifest["skipped"] == []

    ckpt = tmp_path / "only.ckpt"  # the file alone, away from its run folder
    ckpt.write_bytes(newest_last(clean_run / "runs").read_bytes())
    assert main(["predict", "--ckpt_path", str(ckpt), "--data.num_workers", "0", *QUIET,
                 "--trainer.default_root_dir", str(tmp_path)]) == 0


def test_last_checkpoint_holds_the_final_state_when_the_metric_stops_improving(tmp_path):
    """Lightning 2.6 rewrites last.ckpt only when a best checkpoint is saved; ours at every epoch end."""
    L.seed_everything(0)
    data = tiny_data()
    model = tiny_model(data, freeze="all", lr=1e-9)  # val/acc stays put
    trainer = tiny_trainer(tmp_path, max_epochs=3, limit_train_batches=2)
    trainer.fit(model, data)
    checkpoints = trainer.checkpoint_callback
    assert Path(checkpoints.best_model_path).name == "best-epoch=0.ckpt"
    saved = torch.load(find_last_checkpoint(trainer), weights_only=True)
    assert saved["global_step"] == trainer.global_step == 6 and saved["epoch"] == 2
    assert_same_weights(saved["state_dict"], model.state_dict())


# --- atomic checkpoint files ------------------------------------------------------------------------
def _save_forever(folder: str, tmpdir: str | None) -> None:
    import tempfile

    torch.set_num_threads(1)  # a forked child, like a DataLoader worker
    tempfile.tempdir = tmpdir  # e.g. another filesystem, where a plain temp-file-then-move is a copy
    io = AtomicCheckpointIO()
    step = 0
    while True:
        step += 1
        io.save_checkpoint({"step": step, "state_dict": {"w": torch.full((4_000_000,), float(step))}}, f"{folder}/last.ckpt")


def test_a_kill_during_a_save_never_leaves_a_damaged_checkpoint(tmp_path):
    shm = Path("/dev/shm")
    other_fs = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev else None
    context = multiprocessing.get_context("fork")
    rng = random.Random(0)
    last = tmp_path / "last.ckpt"
    kills = 0
    # at least 8 kills, and on until one has landed in the middle of writing a new version
    while kills < 8 or (not list(tmp_path.glob(".last.ckpt.*.tmp")) and kills < 40):
        kills += 1
        before = last.stat().st_ino if last.exists() else None
        proc = context.Process(target=_save_forever, args=(str(tmp_path), other_fs), daemon=True)
        proc.start()
        deadline = time.monotonic() + 60  # wait until this child has replaced last.ckpt once: it is saving
        while (not last.exists() or last.stat().st_ino == before) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.4))  # somewhere in a save: the loop does nothing else
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        state = torch.load(last, weights_only=True)  # the checkpoint there is always a whole one
        assert torch.all(state["state_dict"]["w"] == state["step"])
    assert list(tmp_path.glob(".last.ckpt.*.tmp"))  # kills landed in the middle of writing a new version
    assert [p.name for p in tmp_path.glob("last*.ckpt")] == ["last.ckpt"]  # and its leftovers stay hidden


def test_last_is_the_newest_checkpoint_of_any_earlier_run_folder(tmp_path):
    trainer = tiny_trainer(tmp_path)  # its own run will be lightning_logs/version_2
    logs = tmp_path / "lightning_logs"
    files = [logs / "version_0" / "checkpoints" / "last.ckpt", logs / "version_1" / "checkpoints" / "last-v1.ckpt",
             logs / "version_1" / "checkpoints" / ".last.ckpt.abc.tmp", logs / "version_1" / "checkpoints" / "best-epoch=3.ckpt"]
    for age, path in enumerate(files):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, ns=(10**18 + age * 10**9,) * 2)
    assert find_last_checkpoint(trainer) == files[1]  # not the hidden temp file nor a best checkpoint
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"x")  # a SLURM requeue checkpoint, newer still
    assert find_last_checkpoint(trainer) == tmp_path / "hpc_ckpt_1.ckpt"
    assert find_last_checkpoint(tiny_trainer(tmp_path / "elsewhere")) is None


def test_trainer_uses_atomic_checkpoint_io(tmp_path):
    trainer = tiny_trainer(tmp_path)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    atomic_torch_save({"x": torch.ones(2)}, tmp_path / "a" / "b.pt")
    assert torch.load(tmp_path / "a" / "b.pt", weights_only=True)["x"].sum() == 2


# --- bad images -------------------------------------------------------------------------------------
def make_dataset_with_bad_files(root: Path) -> tuple[list[str], list[str]]:
    """3 identities x 6 good images, plus 4 unusable files and 3 unusual but valid ones."""
    for ident in range(3):
        for i in range(6):
            write_face(root / f"p{ident}" / f"{i}.jpg", ident, i, size=48)
    good = (root / "p0" / "0.jpg").read_bytes()
    damaged = bytearray(good)
    for i in range(len(damaged) // 2, len(damaged) // 2 + 200):  # scrambled entropy-coded data
        damaged[i] = (damaged[i] * 7 + 13) & 0xFF
    (root / "p0" / "corrupt.jpg").write_bytes(bytes(damaged))
    (root / "p1" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "p1" / "empty.jpg").write_bytes(b"")
    (root / "p2" / "notes.txt").write_text("not a face")
    rgb = np.asarray(Image.open(root / "p0" / "1.jpg").convert("RGB"))
    Image.fromarray(rgb).convert("CMYK").save(root / "p0" / "cmyk.jpg", quality=95)
    Image.fromarray((np.arange(48 * 48, dtype=np.uint32).reshape(48, 48) * 28).astype(np.uint16)).save(root / "p1" / "deep.png")
    Image.fromarray(rgb).resize((12, 12)).save(root / "p2" / "tiny.png")
    bad = ["p0/corrupt.jpg", "p1/empty.jpg", "p1/truncated.jpg", "p2/notes.txt"]
    return bad, ["p0/cmyk.jpg", "p1/deep.png", "p2/tiny.png"]


def test_bad_images_stop_before_training_with_every_file_listed(tmp_path, capsys):
    bad, valid = make_dataset_with_bad_files(tmp_path / "faces")
    with pytest.raises(DataError) as err:
        ft.FaceDataModule("folder", root=str(tmp_path / "faces"), num_workers=0).manifest
    message = str(err.value)
    assert message.startswith("4 unreadable image(s)") and "on_bad_image: skip" in message
    for key in bad:
        assert str(tmp_path / "faces" / key) in message
    assert "empty file (0 bytes)" in message and "truncated" in message and "not an image file" in message
    assert not any(key in message for key in valid)

    runs = tmp_path / "runs"
    args = ["fit", *MODEL_ARGS, "--data.dataset", "folder", "--data.root", str(tmp_path / "faces"),
            "--data.num_workers", "0", *QUIET, "--trainer.default_root_dir", str(runs)]
    assert main(args) == 2
    err_text = capsys.readouterr().err
    assert err_text.startswith("facetransfer: error: 4 unreadable image(s)") and "Traceback" not in err_text
    assert all(key in err_text for key in bad)
    assert not list(runs.rglob("*.ckpt"))  # nothing trained


def test_skip_leaves_bad_images_out_with_one_warning_and_records_them(tmp_path):
    bad, valid = make_dataset_with_bad_files(tmp_path / "faces")
    data = ft.FaceDataModule("folder", root=str(tmp_path / "faces"), on_bad_image="skip", batch_size=8,
                             min_images_per_identity=3, num_workers=0,
                             preprocess=ft.backbone_preprocess("scratch_cnn", backbone_args=TINY))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = data.manifest
    skipping = [w for w in caught if "skipping" in str(w.message)]
    assert len(skipping) == 1 and all(key in str(skipping[0].message) for key in bad)
    assert [s["key"] for s in manifest.skipped] == bad and all(s["reason"] for s in manifest.skipped)
    used = {k for part in (manifest.train, manifest.val, manifest.test) for k, _ in part}
    assert set(valid) <= used and not used & set(bad)

    L.seed_everything(0)
    model = tiny_model(data, lr=1e-2)
    trainer = tiny_trainer(tmp_path / "runs", max_epochs=1)
    trainer.fit(model, data)  # CMYK, 16-bit and 12-pixel images go through the real pipeline
    saved = json.loads((Path(trainer.log_dir) / "split.json").read_text())
    assert [s["key"] for s in saved["skipped"]] == bad
    assert torch.load(str(find_last_checkpoint(trainer)), weights_only=True)["FaceDataModule"]["manifest"]["skipped"] == saved["skipped"]


def test_unusual_but_valid_images_are_read_correctly(tmp_path):
    colours = np.zeros((16, 48, 3), np.uint8)
    colours[:, :16], colours[:, 16:32], colours[:, 32:] = (220, 30, 30), (30, 200, 40), (20, 40, 230)
    Image.fromarray(colours).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    got = np.asarray(load_rgb(tmp_path / "cmyk.jpg")).astype(int)
    assert np.abs(got[8, [8, 24, 40]] - colours[8, [8, 24, 40]]).max() <= 6  # red, green, blue stay themselves

    Image.fromarray(np.array([[0, 1000, 32896, 65535]], np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    assert np.asarray(load_rgb(tmp_path / "deep.png"))[0, :, 0].tolist() == [0, 4, 128, 255]  # scaled, not clipped

    Image.fromarray(colours).resize((6, 6)).save(tmp_path / "tiny.png")
    pp = ft.Preprocess(crop_size=32, resize_size=36)
    image = load_rgb(tmp_path / "tiny.png")
    assert pp.eval_transform(0.8)(image).shape == pp.train_transform(0.8)(image).shape == (3, 32, 32)


# --- safe loading -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    L.seed_everything(0)
    trainer = tiny_trainer(root, max_epochs=1, limit_train_batches=2)
    data = tiny_data()
    trainer.fit(tiny_model(data), data)
    return Path(str(find_last_checkpoint(trainer)))


def test_a_checkpoint_with_a_pickled_object_is_refused(small_checkpoint, tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    checkpoint = torch.load(small_checkpoint, weights_only=True)
    checkpoint["extra"] = Pickled()
    torch.save(checkpoint, evil)
    with pytest.raises(WeightsError, match=r"holds a pickled Python object \(tests\.test_reliability\.Pickled\).*weights_only=True"):
        ft.FaceClassifier.load_from_checkpoint(evil)
    with pytest.raises(WeightsError, match="not only tensors"):
        AtomicCheckpointIO().load_checkpoint(evil)
    with pytest.raises(WeightsError, match=rf"weights file {evil} holds a pickled Python object .*; it was refused"):
        load_state_dict_file(evil)
    assert main(["test", "--ckpt_path", str(evil), *MODEL_ARGS, "--data.num_workers", "0", *QUIET,
                 "--trainer.default_root_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"facetransfer: error: checkpoint {evil} holds a pickled Python object") and "Traceback" not in err

    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(small_checkpoint.read_bytes()[:5000])
    assert main(["test", "--ckpt_path", str(damaged), *MODEL_ARGS, "--data.num_workers", "0", *QUIET,
                 "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert f"facetransfer: error: checkpoint {damaged} is damaged" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--model.backbone", "resnet18"], r"checkpoint \S+exported.ckpt holds backbone 'scratch_cnn' with 6 classes; this model is 'resnet18'"),
        ([*MODEL_ARGS, "--data.split_manifest", "{two_identities}"], r"two.json with 2 identities \(checkpoint: 6\) contradicts"),
    ],
)
def test_a_checkpoint_of_another_backbone_or_class_count_names_both(small_checkpoint, tmp_path, capsys, args, pattern):
    # LightningCLI builds the model from a checkpoint's hyperparameters when it has them, so
    # the flags can only disagree with a checkpoint that carries none (e.g. an exported one)
    exported = tmp_path / "exported.ckpt"
    checkpoint = torch.load(small_checkpoint, weights_only=True)
    del checkpoint["hyper_parameters"], checkpoint["facetransfer_digest"]  # an edited file: no digest of its own
    torch.save(checkpoint, exported)
    two = tiny_data(dataset_args={**SYNTH, "num_identities": 2}).manifest.save(tmp_path / "two.json")
    args = [str(two) if a == "{two_identities}" else a for a in args]
    assert main(["test", "--ckpt_path", str(exported), *args, "--data.num_workers", "0", *QUIET,
                 "--trainer.default_root_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err) and "Traceback" not in err, err


def test_last_without_any_checkpoint(tmp_path, capsys):
    args = [*MODEL_ARGS, "--data.num_workers", "0", *QUIET, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", "last"]
    assert main(["test", *args]) == 2
    assert "--ckpt_path last: no last*.ckpt under" in capsys.readouterr().err


# --- every fault in one line ------------------------------------------------------------------------
RUN = ["--data.dataset", "synthetic", "--data.dataset_args", json.dumps(SYNTH), "--data.num_workers", "0",
       "--data.batch_size", "8", *MODEL_ARGS, *QUIET]


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("facetransfer: error: ")
    return lines[0]


@pytest.mark.parametrize("option, value, message", [
    ("--trainer.max_epochs", "-5", "trainer.max_epochs must be >= -1, got -5"),
    ("--trainer.accumulate_grad_batches", "0", "trainer.accumulate_grad_batches must be > 0, got 0"),
    ("--model.head_dropout", "1.5", "model.head_dropout must be in [0, 1), got 1.5"),
    ("--model.lr", "0", "model.lr must be > 0, got 0"),
])
def test_out_of_range_options_are_refused_while_parsing(tmp_path, capsys, option, value, message):
    assert main(["fit", *RUN, "--trainer.default_root_dir", str(tmp_path), option, value]) == 2
    assert message in one_error_line(capsys)
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def test_python_callers_meet_the_same_ranges():
    with pytest.raises(ConfigError, match=r"head_dropout must be in \[0, 1\), got 1.5"):
        ft.FaceClassifier("scratch_cnn", backbone_args=TINY, head_dropout=1.5)
    with pytest.raises(ConfigError, match="max_epochs must be >= -1, got -5"):
        ft.make_trainer(max_epochs=-5)


def test_a_config_that_is_a_folder_or_a_list_is_named(tmp_path, capsys):
    (tmp_path / "list.yaml").write_text("- model\n- data\n")
    assert main(["fit", "--config", str(tmp_path)]) == 2
    assert f"config file {tmp_path} is a folder" in one_error_line(capsys)
    assert main(["verify", "--config", str(tmp_path / "list.yaml")]) == 2
    assert f"config file {tmp_path / 'list.yaml'} must hold a mapping of keys" in one_error_line(capsys)


def test_checkpoint_mistakes_are_one_line_without_lightnings_banner(small_checkpoint, tmp_path, capsys):
    """No "Seed set to 0" / "GPU available" / "Restoring states" above the error; the file is named."""
    root = ["--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main(["test", *RUN, *root, "--ckpt_path", str(tmp_path / "missing.ckpt")]) == 2
    assert "missing.ckpt does not exist" in one_error_line(capsys)
    assert main(["test", *RUN, *root, "--ckpt_path", "last"]) == 2
    assert "--ckpt_path last: no last*.ckpt under" in one_error_line(capsys)
    assert main(["test", *RUN, *root, "--ckpt_path", str(tmp_path)]) == 2
    assert f"checkpoint {tmp_path} is a folder" in one_error_line(capsys)
    other = {**SYNTH, "num_identities": 7}
    assert main(["fit", *RUN, *root, "--data.dataset_args", json.dumps(other), "--ckpt_path", str(small_checkpoint)]) == 2
    assert f"checkpoint {small_checkpoint} holds backbone 'scratch_cnn' with 6 classes" in one_error_line(capsys)


def test_a_weights_file_with_a_pickle_is_refused_without_advice_to_load_it(small_checkpoint, tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": Pickled()}, evil)
    with pytest.raises(WeightsError) as err:
        load_state_dict_file(evil)
    assert "was refused" in str(err.value) and "weights_only=False" not in str(err.value)


def test_an_error_in_a_dataloader_worker_is_its_own_line(small_checkpoint, tmp_path, capsys):
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "fake.jpg").write_text("not a photo")
    args = ["predict", "--ckpt_path", str(small_checkpoint), "--data.predict_root", str(folder),
            "--data.num_workers", "1", *QUIET, "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert line == f"facetransfer: error: cannot read image {folder / 'fake.jpg'}: not a known image format"


def test_a_full_disk_under_the_tensorboard_writer_is_one_line_naming_the_log_folder(tmp_path, capsys, monkeypatch):
    import errno

    from tensorboard.summary.writer import record_writer

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    args = ["fit", *RUN, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"facetransfer: error: cannot write {tmp_path / 'runs' / 'lightning_logs'}")
    assert "No space left on device" in line
