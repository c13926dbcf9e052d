"""Strategies as registered objects: built-ins, plug-ins through an entry point, prototype, the converging probe."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

import facetransfer as ft
from facetransfer.cli import main
from facetransfer.errors import ConfigError
from facetransfer.features import FeatureDataset, InMemoryFeatures
from facetransfer.strategies import (
    Strategy,
    get_strategy,
    list_strategies,
    register_strategy,
)
from facetransfer.strategies.features_logreg import logistic_regression
from facetransfer.strategies.prototype import Prototype
from facetransfer.sweep import load_sweep_config, run_sweep

from .fakes import REPO
from .test_sweep import tiny_sweep

PACKAGE = Path(__import__("facetransfer").__file__).parent


BUILT_IN = ["scratch", "linear_probe", "finetune", "features_logreg", "prototype", "lp_ft"]


def test_built_in_strategies_are_registered_objects(capsys):
    assert list_strategies()[: len(BUILT_IN)] == BUILT_IN
    assert get_strategy("scratch").pretrained is False and get_strategy("linear_probe").freeze == "all"
    assert get_strategy("finetune").default_freeze == "first:2" and get_strategy("prototype").trains == "solver"
    with pytest.raises(ConfigError, match="unknown strategy 'transfer'; known: "):
        get_strategy("transfer")
    with pytest.raises(ValueError, match="already registered"):

        @register_strategy
        class Impostor(Strategy):
            name = "scratch"

    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    assert "prototype" in out and "trains: solver; freezes: all; a method may set: model:, logreg:" in out


@pytest.mark.parametrize("config", ["scratch", "linear_probe", "finetune"])
def test_a_fit_config_and_a_sweep_method_of_its_strategy_resolve_alike(config, tmp_path, capsys, monkeypatch):
    """`fit --config configs/<strategy>.yaml` (parsed, not trained) and a sweep method of the same strategy,
    backbone, weights, epochs and batch size: the same model, trainer and loader options, from the one recipe."""
    import inspect

    from facetransfer.sweep.config import CELL_TRAINER_DEFAULTS

    monkeypatch.setattr(sys, "argv", ["facetransfer"])
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / f"{config}.yaml"), "--print_config"])
    fit = yaml.safe_load(capsys.readouterr().out)
    assert fit["strategy"] == config
    method = {"strategy": config, "backbone": fit["model"]["backbone"], "weights": fit["model"]["weights"]}
    sweep = load_sweep_config(tiny_sweep(tmp_path, model={}, trainer={"max_epochs": fit["trainer"]["max_epochs"]},
                                         data={"batch_size": 32}, methods=[method]))
    (spec,) = sweep.methods
    signature = inspect.signature(ft.FaceClassifier.__init__).parameters
    managed = ("self", "class_names", "open_set", "eval_class_names", "features")
    model = {k: p.default for k, p in signature.items() if k not in managed}
    assert {k: fit["model"][k] for k in model} == {**model, **spec.classifier_args()}
    trainer = {k: v for k, v in spec.trainer.items() if k not in CELL_TRAINER_DEFAULTS}
    assert trainer == {"max_epochs": 20} and {k: fit["trainer"][k] for k in trainer} == trainer
    assert fit["data"]["batch_size"] == {**sweep.data, **spec.data}["batch_size"]
    # the config and the command line override the recipe
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / f"{config}.yaml"), "--model.head_norm", "false", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["head_norm"] is False


def test_fit_with_a_strategy_gets_its_callbacks_and_its_freeze_rule(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facetransfer"])
    tiny = ["--model.backbone", "scratch_cnn", "--model.backbone_args", "{widths: [8, 16], fc_features: 32, input_size: 32}",
            "--data.dataset_args", "{num_identities: 4, images_per_identity: 8, image_size: 40}", "--data.num_workers", "0",
            "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]
    assert main(["fit", "--strategy", "linear_probe", *tiny, "--model.freeze", "first:1"]) == 2
    assert "model.freeze: strategy linear_probe always uses freeze 'all' (got 'first:1')" in capsys.readouterr().err
    assert main(["fit", "--strategy", "lp_ft", *tiny, "--model.freeze", "first:1"]) == 0
    (last,) = tmp_path.rglob("last.ckpt")
    state = torch.load(last, weights_only=True)
    assert {"done": True} in state["callbacks"].values() and state["hyper_parameters"]["lr"] == 1e-4  # LP-FT's head fit


def test_nothing_outside_a_strategy_names_it():
    """The sweep, the CLI and the data/model code never name a built-in strategy: its file does."""
    names = BUILT_IN
    allowed = {PACKAGE / "strategies" / f"{n}.py" for n in names} | {PACKAGE / "strategies" / "__init__.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path in allowed:
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if f'"{n}"' in text or f"'{n}'" in text]
    assert not offenders, offenders


def test_data_and_model_meet_only_through_their_constructors():
    for path in (PACKAGE / "data").rglob("*.py"):
        assert "lightning_module" not in path.read_text(), path
    assert "trainer.datamodule" not in (PACKAGE / "training" / "module.py").read_text()


def test_prototype_is_the_nearest_class_mean_by_cosine():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 3
    labels = np.repeat(np.arange(3), 5)  # class 3 has no training image
    train = (centres[labels] + rng.normal(size=(15, 16))).astype(np.float32)
    test = (centres[[0, 1, 2, 3]] + 0.1 * rng.normal(size=(4, 16))).astype(np.float32)
    scores = Prototype().solve(train, labels, test, 4, None, 0, None)
    assert scores.shape == (4, 4) and scores[:3].argmax(1).tolist() == [0, 1, 2]
    assert (scores[:, 3] < -1).all()  # an identity without a training image is never chosen


def test_prototype_cells_in_a_sweep(tmp_path):
    methods = [{"strategy": "prototype", "backbone": "scratch_cnn", "name": "prototype/random_cnn"},
               {"strategy": "features_logreg", "backbone": "scratch_cnn", "name": "features_logreg/random_cnn"}]
    result = run_sweep(load_sweep_config(tiny_sweep(tmp_path, methods=methods, train_samples=[6, "all"])),
                       progress=False, report=False, echo=lambda _: None)
    assert len(result.ran) == 4 and result.features_computed == 1  # both methods share one feature pass
    rows = list(csv.DictReader(open(result.results_csv)))
    assert {r["strategy"] for r in rows} == {"prototype", "features_logreg"}
    assert all(0 <= float(r["test_top1"]) <= float(r["test_top5"]) <= 1 for r in rows)


def gaussian_features(seed: int, n: int, classes: int = 8, dims: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dims, generator=torch.Generator().manual_seed(99)) * 0.8
    labels = torch.arange(n) % classes
    feats = centres[labels] + torch.randn(n, dims, generator=generator)
    return feats * 5 + 3, labels  # a scale and offset that only standardisation removes


def test_the_lbfgs_linear_probe_solves_the_logistic_regression_problem(tmp_path):
    """Full-batch L-BFGS on standardised features with head_c = C reaches scikit-learn's optimum."""
    train_x, train_y = gaussian_features(0, 96)
    test_x, test_y = gaussian_features(1, 200)
    names = [f"id{i}" for i in range(8)]
    model = ft.FaceClassifier("scratch_cnn", backbone_args={"widths": [4], "fc_features": 32, "input_size": 16},
                              freeze="all", head_norm=True, optimizer="lbfgs", head_c=1.0, class_names=names,
                              features=InMemoryFeatures())
    model.backbone.num_features = 32
    model._build_head(names)
    L.seed_everything(0)
    loader = DataLoader(FeatureDataset(train_x, train_y), batch_size=len(train_y))
    trainer = L.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, loader)

    sklearn = logistic_regression({"C": 1.0, "max_iter": 1000}, seed=0).fit(train_x.numpy(), train_y.numpy())
    model.eval()
    with torch.no_grad():
        ours = model(test_x).argmax(1).numpy()
    theirs = sklearn.predict(test_x.numpy())
    assert (ours == theirs).mean() >= 0.97
    # the same objective at both solutions: mean cross-entropy + |W|^2 / (2 C n) on the training set
    lr = sklearn[-1]
    z = torch.from_numpy(sklearn[0].transform(train_x.numpy())).float()
    logits = z @ torch.from_numpy(lr.coef_).float().T + torch.from_numpy(lr.intercept_).float()
    theirs_objective = torch.nn.functional.cross_entropy(logits, train_y) + (lr.coef_ ** 2).sum() / (2 * len(train_y))
    model.train()
    with torch.no_grad():
        ours_objective = torch.nn.functional.cross_entropy(model(train_x), train_y) + model._penalty(len(train_y))
    assert float(ours_objective) == pytest.approx(float(theirs_objective), rel=2e-3)


@pytest.mark.slow
def test_a_strategy_plug_in_package_runs_in_a_sweep(tmp_path):
    """examples/plugin_strategy installed (into a folder on PYTHONPATH) adds `strategy: knn` through its entry point."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(target), str(REPO / "examples" / "plugin_strategy")],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    methods = [{"strategy": "knn", "backbone": "scratch_cnn", "knn": {"n_neighbors": 3}},
               {"strategy": "prototype", "backbone": "scratch_cnn"}]
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny_sweep(tmp_path, methods=methods, train_samples=[12])))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO)])}
    listed = subprocess.run([sys.executable, "-m", "facetransfer", "strategies"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0 and "knn " in listed.stdout, listed.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "facetransfer", "sweep", "--config", str(config), "--no_progress"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "results" / "results.csv")))
    assert [(r["strategy"], r["train_samples"]) for r in rows] == [("knn", "12"), ("prototype", "12")]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_sweep(tmp_path, methods=[{"strategy": "knn", "backbone": "scratch_cnn",
                                                                  "knn": {"neighbours": 3}}])))
    refused = subprocess.run([sys.executable, "-m", "facetransfer", "sweep", "--config", str(bad)], env=env,
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert refused.returncode == 2 and "methods[0].knn: unknown key 'neighbours'" in refused.stderr
