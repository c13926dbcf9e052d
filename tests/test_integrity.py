"""Integrity and fault handling: damaged files refused, filesystem faults in one line, config errors not buried.

docs/reliability.md tabulates each fault, what the user sees and what is kept; each row is a test here
or in tests/test_reliability.py.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import lightning as L
import pytest
import torch

import facetransfer as ft
import facetransfer.io.atomic
from facetransfer.cli import main
from facetransfer.data.sources import get_source
from facetransfer.errors import DataError, FileSystemError, WeightsError
from facetransfer.io.checkpoint import (
    DIGEST_KEY,
    DigestMismatch,
    read_checkpoint,
    verify_digest,
    with_digest,
)
from facetransfer.models import verified_cache
from facetransfer.models.weights import load_state_dict_file
from facetransfer.training.trainer import AtomicCheckpointIO

from .fakes import MOBILENET_FILE, REPO, make_folder_tree, real_cached_file
from .test_reliability import (
    MODEL_ARGS,
    QUIET,
    SYNTH,
    TINY,
    tiny_data,
    tiny_model,
    tiny_trainer,
)

RUN_ARGS = [*MODEL_ARGS, "--data.dataset_args", str(SYNTH), "--data.batch_size", "8", "--data.num_workers", "0", *QUIET]


@pytest.fixture(autouse=True)
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])


@pytest.fixture(scope="module")
def signed_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a short run (scratch_cnn, 6 synthetic identities), saved by facetransfer's checkpoint IO."""
    root = tmp_path_factory.mktemp("signed")
    L.seed_everything(0)
    trainer = tiny_trainer(root, max_epochs=1, limit_train_batches=2)
    data = tiny_data()
    trainer.fit(tiny_model(data), data)
    return Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"


def flip_bits(src: Path, dest: Path, record: str = "data/0", offsets=(3, 100, 301)) -> Path:
    """A copy of ``src`` with a few bits flipped inside the bytes of one tensor (zip record ``archive/<record>``)."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/" + record))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the local header's size
    for offset in offsets:
        data[start + offset % info.file_size] ^= 0x40  # an exponent bit: 1e38-size weights, as a failing disk makes
    dest.write_bytes(bytes(data))
    return dest


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("facetransfer: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 1. checkpoint content digest -------------------------------------------------------------------
def test_digest_survives_a_save_load_round_trip_and_names_what_changed():
    weight = torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last)  # strides do not matter
    checkpoint = {"state_dict": OrderedDict(w=weight, b=torch.zeros(8, dtype=torch.bfloat16)), "epoch": 3,
                  "hyper_parameters": {"lr": 1e-4, "class_names": ["a", "b"], "backbone_args": None},
                  "loops": {"steps": (1, 2.5, True)}}
    buffer = io.BytesIO()
    torch.save(with_digest(checkpoint), buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert verify_digest(loaded, "x.ckpt") is True

    loaded["state_dict"]["w"][0, 1, 2, 0] += 1.0
    with pytest.raises(DigestMismatch, match=r"checkpoint x.ckpt is damaged: its state_dict does not match"):
        verify_digest(loaded, "x.ckpt")
    edited = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    edited["hyper_parameters"]["lr"] = 1e-3
    del edited["epoch"]
    with pytest.raises(DigestMismatch, match=r"its epoch \(missing\), hyper_parameters does not match"):
        verify_digest(edited)
    assert verify_digest(checkpoint) is False  # no digest: an older or foreign checkpoint loads as before


def test_a_bit_flipped_checkpoint_is_refused_by_every_loader(signed_checkpoint, tmp_path, capsys):
    assert DIGEST_KEY in torch.load(signed_checkpoint, weights_only=True)
    assert read_checkpoint(signed_checkpoint)["state_dict"]  # the intact file loads
    flipped = flip_bits(signed_checkpoint, tmp_path / "flipped.ckpt")
    assert torch.load(flipped, weights_only=True)["state_dict"]  # torch alone accepts it

    damaged = rf"checkpoint {flipped} is damaged: its state_dict does not match the sha256 digest"
    for load in (read_checkpoint, AtomicCheckpointIO().load_checkpoint, load_state_dict_file):
        with pytest.raises(WeightsError, match=damaged):
            load(flipped)
    with pytest.raises(WeightsError, match=damaged):  # resuming from it (Lightning's loading path)
        data = tiny_data()
        tiny_trainer(tmp_path / "resume", max_epochs=2).fit(tiny_model(data), data, ckpt_path=str(flipped))
    with pytest.raises(WeightsError, match=damaged):  # weights_path: a checkpoint as the start of another run
        ft.get_backbone("scratch_cnn", weights_path=str(flipped), **TINY)

    for command in ("test", "predict", "validate"):
        assert main([command, "--ckpt_path", str(flipped), "--data.num_workers", "0", *QUIET,
                     "--trainer.default_root_dir", str(tmp_path / "runs")]) == 2
        assert one_error_line(capsys).startswith(f"facetransfer: error: checkpoint {flipped} is damaged")
    assert not (tmp_path / "runs").exists()


def test_load_from_checkpoint_refuses_a_bit_flipped_checkpoint(signed_checkpoint, tmp_path):
    flipped = flip_bits(signed_checkpoint, tmp_path / "flipped.ckpt")
    with pytest.raises(WeightsError, match=rf"checkpoint {flipped} is damaged"):
        ft.FaceClassifier.load_from_checkpoint(flipped)
    # the intact file loads, also with a hyperparameter given as a keyword (which changes the hyperparameters)
    assert ft.FaceClassifier.load_from_checkpoint(signed_checkpoint).num_classes > 0
    assert ft.FaceClassifier.load_from_checkpoint(signed_checkpoint, lr=0.5).hparams.lr == 0.5


# --- 2. cached pretrained weights -------------------------------------------------------------------
def test_a_byte_flipped_cached_weights_file_is_refused_until_reimported(isolated_torch_home, tmp_path, capsys, monkeypatch):
    real = real_cached_file(MOBILENET_FILE)
    isolated_torch_home.mkdir(parents=True, exist_ok=True)
    cached = isolated_torch_home / MOBILENET_FILE
    data = bytearray(real.read_bytes())  # torchvision's file (legacy format): the tensors fill its second half
    for position in range(len(data) // 2, len(data) // 2 + 4000, 1000):
        data[position] ^= 0x40
    cached.write_bytes(bytes(data))
    assert torch.load(cached, weights_only=True)  # torch alone loads it

    with pytest.raises(WeightsError, match=rf"cached weights file {cached} is damaged: its sha256 starts with \w+, "
                                           r"expected b0353104; re-import a good copy with: facetransfer weights import"):
        ft.get_backbone("mobilenet_v2", weights="IMAGENET1K_V1")
    args = ["fit", "--model.backbone", "mobilenet_v2", "--model.weights", "IMAGENET1K_V1", "--model.freeze", "all",
            "--data.num_workers", "0", *QUIET, "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert f"cached weights file {cached} is damaged" in line and "--force" in line

    assert main(["weights", "import", str(real), "--force"]) == 0  # the repair the message names
    assert ft.get_backbone("mobilenet_v2", weights="IMAGENET1K_V1").num_features == 1280
    assert (isolated_torch_home / verified_cache.RECORD_NAME).is_file()

    good = cached.read_bytes()  # rot after a verified use, keeping size and modification time: refused
    stat = cached.stat()
    cached.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(WeightsError, match=f"cached weights file {cached} is damaged"):
        ft.get_backbone("mobilenet_v2", weights="IMAGENET1K_V1")


# --- 3. options that contradict the checkpoint ------------------------------------------------------
@pytest.mark.parametrize(
    "args, found",
    [
        (["--model.backbone", "resnet18"], "--model.backbone resnet18 (checkpoint: scratch_cnn)"),
        (["--model.weights", "IMAGENET1K_V1"], "--model.weights IMAGENET1K_V1 (checkpoint: null)"),
        (["--data.max_identities", "3"], "--data.max_identities 3 (checkpoint's split: null)"),
        (["--data.split_manifest", "{two}"], "with 2 identities (checkpoint: 6)"),
    ],
)
def test_an_option_that_contradicts_the_checkpoint_names_both_values(signed_checkpoint, tmp_path, capsys, args, found):
    two = tiny_data(dataset_args={**SYNTH, "num_identities": 2}).manifest.save(tmp_path / "two.json")
    args = [str(two) if a == "{two}" else a for a in args]
    assert main(["test", "--ckpt_path", str(signed_checkpoint), *args, "--data.num_workers", "0", *QUIET,
                 "--trainer.default_root_dir", str(tmp_path / "runs")]) == 2
    line = one_error_line(capsys)
    assert found in line and f"contradicts the checkpoint {signed_checkpoint}" in line, line


def test_options_that_agree_with_the_checkpoint_are_fine(signed_checkpoint, tmp_path, capsys):
    """Given explicitly (here in a config file, as after `fit --config`), equal values are no conflict."""
    config = tmp_path / "same.yaml"
    config.write_text(f"model:\n  backbone: scratch_cnn\n  backbone_args: {json.dumps(TINY)}\n  weights: null\n")
    assert main(["test", "--config", str(config), "--ckpt_path", str(signed_checkpoint), "--model.freeze", "none",
                 "--data.num_workers", "0", *QUIET, "--trainer.default_root_dir", str(tmp_path / "runs")]) == 0
    assert "test/acc" in capsys.readouterr().out


# --- 4. filesystem faults -------------------------------------------------------------------------------
def test_a_read_only_run_folder_is_one_line(tmp_path, capsys, monkeypatch):
    """The folder Lightning creates first (the logger's) cannot be made: one line, nothing left behind."""
    read_only = tmp_path / "ro"  # as a read-only mount: the folder is there, nothing can be made in it
    read_only.mkdir()
    real_makedirs = os.makedirs

    def makedirs(name, *args, **kwargs):
        path = Path(name)
        if read_only in path.parents:
            while not path.parent.exists():  # the first folder to make, as os.makedirs fails on it
                path = path.parent
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_makedirs(name, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    assert main(["fit", *RUN_ARGS, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(read_only / "runs")]) == 2
    line = one_error_line(capsys)
    assert line == f"facetransfer: error: cannot create folder {read_only / 'runs'}: Read-only file system (nothing was trained or tested)"


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, path, mode, room: int, **kwargs) -> None:
        self.fh = open(path, mode, **kwargs)
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.room < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def close(self) -> None:
        self.fh.close()
        super().close()


def fill_disk_for(monkeypatch, suffix: str, room: int = 4096, after: int = 0) -> None:
    """Writes of files ending in ``suffix`` through facetransfer's atomic writer run out of space
    (after ``after`` writes that succeed)."""
    writes = []

    def opener(path, mode="r", *args, **kwargs):
        if "w" in mode and f"{suffix}." in Path(path).name:  # the hidden temporary file: .last.ckpt.<random>.tmp
            writes.append(path)
            if len(writes) > after:
                return _FullDisk(path, mode, room, **kwargs)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(facetransfer.io.atomic, "open", opener, raising=False)


def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch, capsys):
    io_ = AtomicCheckpointIO()
    last = tmp_path / "last.ckpt"
    io_.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, last)
    fill_disk_for(monkeypatch, ".ckpt", room=100)
    with pytest.raises(FileSystemError, match=rf"cannot save checkpoint {last}: No space left on device "
                                              r"\(the previous last.ckpt is kept\)"):
        io_.save_checkpoint({"state_dict": {"w": torch.full((1000,), 2.0)}}, last)
    assert torch.equal(read_checkpoint(last)["state_dict"]["w"], torch.ones(3)) and os.listdir(tmp_path) == ["last.ckpt"]

    runs = tmp_path / "runs"  # the same in a run: its first checkpoint save fails, after training steps
    assert main(["fit", *RUN_ARGS, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(runs)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"facetransfer: error: cannot save checkpoint {runs}") and "No space left on device" in line
    assert list(runs.rglob("split.json")) and not list(runs.rglob("*.ckpt"))  # a run that trained keeps its folder


def test_a_full_disk_during_a_sweep_keeps_the_finished_cells(tmp_path, monkeypatch, capsys):
    from .test_sweep import tiny_sweep, write_config

    config = write_config(tmp_path, tiny_sweep(tmp_path, train_samples=[10, 20]))
    fill_disk_for(monkeypatch, "results.csv", room=0, after=1)  # the first cell's row is written, the second's is not
    assert main(["sweep", "--config", str(config), "--no_progress", "--no_report"]) == 2
    results = tmp_path / "results" / "results.csv"
    assert one_error_line(capsys) == (
        f"facetransfer: error: cannot write {results}: No space left on device (the previous results.csv is kept); "
        f"the finished cells are kept in {results} (run the same command to resume)")
    assert len(results.read_text().splitlines()) == 2  # header and the first cell


@pytest.mark.slow
def test_real_read_only_and_full_filesystems(tmp_path):
    """The same faults on real tmpfs mounts (a user namespace), where mounting is allowed."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a user namespace here: {probe.stderr.decode().strip()}")
    (tmp_path / "ro").mkdir()
    (tmp_path / "full").mkdir()
    args = ", ".join(repr(a) for a in RUN_ARGS)
    script = textwrap.dedent(f"""
        import sys
        from facetransfer.cli import main
        for root in ({str(tmp_path / 'ro' / 'runs')!r}, {str(tmp_path / 'full' / 'runs')!r}):
            print("RC", main(["fit", {args}, "--trainer.max_epochs", "1", "--trainer.default_root_dir", root]),
                  file=sys.stderr, flush=True)
    """)
    shell = (f"mount -t tmpfs -o ro tmpfs {tmp_path / 'ro'} && mount -t tmpfs -o size=48k tmpfs {tmp_path / 'full'} "
             f"&& exec {sys.executable} -c \"$0\"")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", shell, script], env=env, capture_output=True, text=True, timeout=600)
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith(("facetransfer: error:", "RC"))]
    assert len(errors) == 4, done.stderr[-3000:]
    assert errors == [
        f"facetransfer: error: cannot create folder {tmp_path / 'ro' / 'runs'}: Read-only file system "
        "(nothing was trained or tested)",
        "RC 2",
        errors[2],
        "RC 2",
    ], done.stderr[-3000:]
    assert errors[2].startswith(f"facetransfer: error: cannot save checkpoint {tmp_path / 'full' / 'runs'}")
    assert "No space left on device" in errors[2] and "Traceback" not in done.stderr


def test_a_symbolic_link_to_itself_is_a_bad_image(tmp_path, capsys):
    root = make_folder_tree(tmp_path / "faces")
    (root / "person_0" / "loop.jpg").symlink_to("loop.jpg")
    with pytest.raises(DataError, match=r"(?s)1 unreadable image\(s\).*person_0/loop.jpg: Too many levels of symbolic links "
                                        r"\(a symbolic link that points to itself or into a loop\)"):
        ft.FaceDataModule("folder", root=str(root), num_workers=0).manifest
    data = ft.FaceDataModule("folder", root=str(root), num_workers=0, on_bad_image="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [s["key"] for s in data.manifest.skipped] == ["person_0/loop.jpg"]
    assert main(["fit", *MODEL_ARGS, "--data.dataset", "folder", "--data.root", str(root), *QUIET,
                 "--trainer.default_root_dir", str(tmp_path / "runs")]) == 2
    assert "person_0/loop.jpg: Too many levels of symbolic links" in capsys.readouterr().err
    assert get_source("folder", root=str(root)).records()  # listing the folder does not trip over it


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(signed_checkpoint, tmp_path, capsys):
    runs = tmp_path / "runs"
    four = str({**SYNTH, "num_identities": 4})  # a resume whose data has 4 identities, the checkpoint 6
    assert main(["fit", *RUN_ARGS, "--data.dataset_args", four, "--ckpt_path", str(signed_checkpoint),
                 "--trainer.default_root_dir", str(runs), "--trainer.max_epochs", "2"]) == 2
    assert "with 6 classes; this model is 'scratch_cnn' with 4 classes" in one_error_line(capsys)
    assert not runs.exists()  # neither version_0 nor runs/ itself

    kept = runs / "lightning_logs" / "version_0"
    kept.mkdir(parents=True)
    (kept / "config.yaml").write_text("an earlier run's")
    assert main(["fit", *RUN_ARGS, "--data.dataset_args", four, "--ckpt_path", str(signed_checkpoint),
                 "--trainer.default_root_dir", str(runs), "--trainer.max_epochs", "2"]) == 2
    capsys.readouterr()
    assert sorted(p.name for p in kept.parent.iterdir()) == ["version_0"] and (kept / "config.yaml").is_file()


# --- 5. config errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, expected",
    [
        ("model:\n  lr_rate: 0.1\n", r"{cfg}: unknown key 'model.lr_rate'"),
        ("model:\n  lr: fast\n", r"{cfg}: model.lr: 'fast' is not a number"),
        ("model:\n  optimizer: newton\n", r"{cfg}: model.optimizer: 'newton' is not one of adam, adamw, sgd, lbfgs"),
        ("model:\n\tlr: 0.1\n", r"config file {cfg} is not valid YAML: line 2, column 1: found character"),
        (None, r"config file {cfg} does not exist"),
    ],
)
@pytest.mark.parametrize("command", ["fit", "sweep"])
def test_a_config_mistake_is_one_line_naming_file_key_and_value(tmp_path, capsys, content, expected, command):
    cfg = tmp_path / "run.yaml"
    if content is not None:
        methods = "methods:\n  - {strategy: scratch, backbone: scratch_cnn}\n" if command == "sweep" else ""
        cfg.write_text(content + methods)
    assert main([command, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) <= 3 and "usage:" not in err and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("facetransfer: error: ") and expected.format(cfg=cfg) in line, line
    assert line.endswith(f"(see 'facetransfer {command} --help')")


# --- 6. identities and resumes -----------------------------------------------------------------------
def test_identities_left_out_or_without_training_images_are_warned_about(tmp_path):
    root = make_folder_tree(tmp_path / "faces", identities=4, per_identity=6)
    for extra in ("a", "b"):
        (root / f"sparse_{extra}").mkdir()
        shutil.copy(root / "person_0" / "0.jpg", root / f"sparse_{extra}" / "0.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = ft.FaceDataModule("folder", root=str(root), num_workers=0, train_samples=2).manifest
    messages = [str(w.message) for w in caught]
    assert "min_images_per_identity=3 leaves out 2 of 6 identities (fewer images); 4 are used" in messages
    assert any(m.startswith("train_samples=2 leaves 2 of 4 identities without a training image")
               and "set data.train_samples to at least 4" in m for m in messages), messages
    assert len({label for _, label in manifest.train}) == 2


def test_a_mid_epoch_resume_gets_no_false_resumability_warning(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(0)
    data = tiny_data()
    every_step = ModelCheckpoint(dirpath=tmp_path / "steps", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    tiny_trainer(tmp_path / "a", max_epochs=1, callbacks=[every_step]).fit(tiny_model(data), data)
    middle = str(tmp_path / "steps" / "step=3.ckpt")  # 6 steps per epoch

    def resume(**data_options) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            resumed = tiny_data(**data_options)
            tiny_trainer(tmp_path / "b", max_epochs=1).fit(tiny_model(resumed), resumed, ckpt_path=middle)
        return [str(w.message) for w in caught]

    assert not [m for m in resume() if "not resumable" in m or "resuming with training data" in m]
    changed = [m for m in resume(batch_size=4) if "resuming with training data" in m]
    assert changed == ["resuming with training data batch_size 4 (checkpoint: 8): the batches do not continue "
                       "the interrupted run's order"]
