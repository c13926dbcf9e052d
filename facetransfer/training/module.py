"""``FaceClassifier``: one LightningModule for scratch training, linear probes and fine-tuning.

The three strategies differ only in configuration::

    >>> scratch = FaceClassifier("scratch_cnn", lr=1e-3)
    >>> probe = FaceClassifier("resnet18", weights=None, freeze="all")  # ImageNet: weights="IMAGENET1K_V1"
    >>> finetune = FaceClassifier("resnet18", freeze="first:2")
    >>> probe.backbone.fully_frozen
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, restricted_number_type
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from ..config_errors import FractionUpToOne, UnitFraction, check_ranges
from ..errors import ConfigError, WeightsError
from ..features import BackboneFeatures, FeatureProvider, file_identity, weights_fingerprint
from ..io.checkpoint import CheckpointInfo, read_checkpoint
from ..models import Backbone, get_backbone
from ..models.fusion import channels_last_is_faster
from ..models.heads import HEADS
from ..preprocess import BatchTransforms, ImageBatch, Preprocess
from .devices import autocast_dtype
from .freeze import apply_freeze_policy

CHECKPOINT_KEY = "facetransfer"
_skip_pretrained = contextvars.ContextVar("facetransfer_skip_pretrained", default=False)


@contextlib.contextmanager
def restoring_from_checkpoint() -> Iterator[None]:
    """Inside this block, FaceClassifier builds backbones without loading pretrained weights
    (the checkpoint about to be loaded holds them), so a checkpoint needs no other file."""
    token = _skip_pretrained.set(True)
    try:
        yield
    finally:
        _skip_pretrained.reset(token)


#: the feature size at which ``head_lr_per_feature`` leaves ``lr`` as it is (a face descriptor's)
HEAD_LR_FEATURES = 128


def weight_rms(params: list[torch.Tensor]) -> float:
    """Root mean square of the weight matrices and kernels among ``params`` (all of them if none is;
    1.0 when they are all zero), the scale of a stage's weights.

    >>> weight_rms([torch.full((4, 4), 0.5), torch.zeros(4)])
    0.5
    """
    chosen = [p for p in params if p.ndim > 1] or list(params)
    total = sum(float(p.detach().float().pow(2).sum()) for p in chosen)
    count = sum(p.numel() for p in chosen)
    rms = math.sqrt(total / count) if count else 0.0
    return rms if rms > 0 else 1.0


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    # compute_groups=False: torchmetrics merges metrics whose states are equal after the first
    # update; when a first batch makes top-5 and macro-F1 states coincide, F1 would then be
    # computed from the top-5 states for the rest of the epoch (seen: acc 0.94, "F1" 1.0).
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
        compute_groups=False,
    )


def lbfgs(params, iterations: int) -> torch.optim.LBFGS:
    """Full-batch L-BFGS with a strong-Wolfe line search that stops where scikit-learn's
    ``LogisticRegression`` does: when no gradient entry exceeds 1e-4 (its default ``tol``)."""
    return torch.optim.LBFGS(
        params, lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-4
    )


#: the numeric options' allowed values, checked while the command line is parsed and when the model is built
MODEL_RANGES = {
    "lr": PositiveFloat, "backbone_lr": NonNegativeFloat, "backbone_lr_decay": FractionUpToOne, "head_c": PositiveFloat,
    "lbfgs_iterations": PositiveInt, "l2sp": NonNegativeFloat, "weight_decay": NonNegativeFloat,
    "head_dropout": UnitFraction, "label_smoothing": UnitFraction, "warmup_epochs": NonNegativeInt,
    "input_size": restricted_number_type("AtLeast16Pixels", int, [(">=", 16)]), "embedding_dim": PositiveInt,
    "verify_pairs": PositiveInt,
}


class FaceClassifier(L.LightningModule):
    """A backbone from the registry, a freeze policy and an identity head from the head registry.

    Args:
        backbone: a registered backbone name (``facetransfer.models.list_backbones()``) or a
            :class:`Backbone` instance (e.g. via LightningCLI ``class_path``).
        weights: pretrained weights name (``IMAGENET1K_V1``, ``DEFAULT``, ``FACE_API`` ...); ``None``: random.
        weights_path: a local state dict to start from instead.
        backbone_args: extra arguments of the backbone builder (e.g. ``{"input_size": 64}`` for ``scratch_cnn``).
        freeze: freeze policy: ``none``, ``all`` (linear probe), ``first:K``, ``until:STAGE``, ``stages:A,B``.
        input_size: side of the square input in pixels, overriding the backbone's (e.g. 112 to
            run an ImageNet model 4x cheaper); resize keeps the backbone's crop ratio.
        class_names: identity names, in label order: ``data.class_names`` (the CLI links them from the DataModule).
        head: the identity head (``facetransfer.models.list_heads()``): ``linear`` (softmax classifier), ``cosine``
            (normalised softmax), ``cosface`` or ``arcface`` (margin heads for open-set face embeddings).
        head_args: the head's options, e.g. ``{"scale": 30, "margin": 0.5}`` for ``arcface``.
        embedding_dim: a linear projection + BatchNorm to this size between the pooled features and the head;
            its output is then the embedding that verification, galleries and export use. None: the features.
        open_set: validation and test people are not the training people (``data.open_set``, linked by the CLI
            from ``FaceDataModule(split_by="identity")``): val/test measure pair verification of the embedding
            (``val/verify_acc``, ``val/verify_auc``, ``val/verify_tar@far1e-3``) instead of classification.
        eval_class_names: open-set only: the names of the val/test people, in their label order
            (``data.eval_class_names``, linked by the CLI); they label the test embeddings in TensorBoard.
        verify_pairs: open-set validation/test: at most this many same-person and as many different-person pairs.
        head_dropout: dropout of the pooled features while training: before the ``embedding_dim`` projection when
            there is one (ArcFace's "BN-Dropout-FC-BN"), else before the identity head.
        head_norm: standardise features before the head (``BatchNorm1d`` without affine); makes
            a linear probe train well at one learning rate whatever the backbone's feature scale.
        optimizer: ``adam``, ``adamw``, ``sgd`` (momentum 0.9, nesterov), or ``lbfgs``: full-batch L-BFGS (``lr``
            unused) for heads on frozen features with ``data.batch_size: all``, converged in a few steps.
        lr: learning rate of the head (and of the backbone unless ``backbone_lr`` is set).
        backbone_lr: learning rate of the trainable backbone stages.
        backbone_lr_decay: layer-wise decay: the last trainable stage learns at ``backbone_lr``, each stage before
            it at ``decay`` times the next one's (e.g. 0.7). None: one learning rate for the whole backbone.
        head_lr_per_feature: the head learns at ``lr x 128 / num_features``, so its logits move by the same
            step over a 128-d face descriptor and 2,048-d ResNet-50 features (why: docs/reference.md).
        backbone_lr_relative: each stage learns at ``backbone_lr`` times the root mean square of its weights
            (measured when training starts), so every network moves its weights by the same fraction per
            step (dlib's ResNet has ~15x smaller weights than MobileNetV2's and no BatchNorm).
        l2sp: weight decay toward the pretrained weights (L2-SP, Li et al. 2018): the loss gets
            ``l2sp / 2 * |w - w_pretrained|^2`` over the trainable backbone weights. 0: off.
        weight_decay: decoupled for adamw, L2 otherwise.
        head_c: inverse strength of an L2 penalty on the head's weights as scikit-learn's ``LogisticRegression(C=...)``:
            ``|W|^2 / (2 C n)`` per batch of ``n`` images (its objective when a batch is the training set). None: off.
        lbfgs_iterations: L-BFGS iterations per training step (one step per epoch with full batches).
        scheduler: ``none``, ``cosine`` (per step, after ``warmup_epochs`` of linear warm-up) or ``step`` (x0.1 at
            1/2 and 3/4 of training).
        label_smoothing: cross-entropy label smoothing.
        channels_last: channels-last memory format; ``None``: on for CUDA and CPU devices, where it is faster.
        compile: compile the backbone's stages with ``torch.compile`` (GPU training speed).
        feature_cache: with a frozen backbone (linear probe), train the head on each image's features computed once.
        features: the DataModule's feature provider (``data.features``; the CLI links it): a frozen
            backbone attaches itself to it so the data serves features instead of images.
    """

    def __init__(
        self,
        backbone: str | Backbone = "resnet18",
        weights: str | None = None,
        weights_path: str | None = None,
        backbone_args: dict[str, Any] | None = None,
        freeze: str = "none",
        input_size: int | None = None,
        class_names: list[str] | None = None,
        head: str = "linear",
        head_args: dict[str, Any] | None = None,
        embedding_dim: int | None = None,
        open_set: bool = False,
        eval_class_names: list[str] | None = None,
        verify_pairs: int = 3000,
        head_dropout: float = 0.0,
        head_norm: bool = False,
        optimizer: Literal["adam", "adamw", "sgd", "lbfgs"] = "adam",
        lr: float = 1e-4,
        backbone_lr: float | None = None,
        backbone_lr_decay: float | None = None,
        backbone_lr_relative: bool = False,
        head_lr_per_feature: bool = False,
        l2sp: float = 0.0,
        weight_decay: float = 0.0,
        head_c: float | None = None,
        lbfgs_iterations: int = 200,
        scheduler: Literal["none", "cosine", "step"] = "none",
        warmup_epochs: int = 0,
        label_smoothing: float = 0.0,
        channels_last: bool | None = None,
        compile: bool = False,
        feature_cache: bool = True,
        features: FeatureProvider | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["features"] if isinstance(backbone, str) else ["backbone", "features"])
        if optimizer not in ("adam", "adamw", "sgd", "lbfgs"):
            raise ConfigError(f"unknown optimizer {optimizer!r}; known: adam, adamw, sgd, lbfgs")
        if scheduler not in ("none", "cosine", "step"):
            raise ConfigError(f"unknown scheduler {scheduler!r}; known: none, cosine, step")
        if optimizer == "lbfgs" and scheduler != "none":
            raise ConfigError(f"scheduler {scheduler!r} does not apply to optimizer lbfgs (its line search sets the step)")
        check_ranges(locals(), MODEL_RANGES)
        self.automatic_optimization = optimizer != "lbfgs"  # L-BFGS: one closure-driven step per batch
        if isinstance(backbone, Backbone):
            if weights or weights_path or backbone_args:
                raise ConfigError("weights, weights_path and backbone_args apply to a backbone given by name, "
                                  "not to a Backbone instance")
            self.backbone = backbone
            self.backbone_name = type(backbone).__name__
        else:
            if _skip_pretrained.get():  # the hparams keep the names; the checkpoint holds the weights
                weights = weights_path = None
            self.backbone = get_backbone(backbone, weights=weights, weights_path=weights_path, **(backbone_args or {}))
            self.backbone_name = backbone
        if input_size is not None:
            self.backbone.preprocess = self.backbone.preprocess.resized(input_size)
        self.frozen_stages = apply_freeze_policy(self.backbone, freeze)
        # L2-SP's anchor: the weights as built (pretrained), not saved in checkpoints (a resumed fit
        # rebuilds them the same way); none when a checkpoint is about to replace them anyway
        self._anchor: dict[str, torch.Tensor] = {}
        if l2sp > 0 and not _skip_pretrained.get():
            self._anchor = {
                n: p.detach().clone() for n, p in self.backbone.stages.named_parameters() if p.requires_grad
            }
        if HEADS.get(head).normalized and self.backbone.fully_frozen and not embedding_dim:
            warnings.warn(f"head {head!r} on a frozen backbone without embedding_dim learns nothing but the head: "
                          "the embedding stays the pretrained features (set embedding_dim, or unfreeze stages)",
                          UserWarning, stacklevel=2)
        self.features = features
        self._embeddings: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.class_names: list[str] | None = None
        self.eval_class_names = None if eval_class_names is None else list(eval_class_names)
        if class_names is not None:
            self._build_head(list(class_names))

    # --- head and metrics ------------------------------------------------------------------
    def _build_head(self, class_names: list[str]) -> None:
        if len(class_names) < 2:
            raise ConfigError(f"a face classifier needs at least 2 identities, got {len(class_names)}")
        self.class_names = class_names
        self.hparams["class_names"] = class_names
        with torch.random.fork_rng(devices=[]):
            # a run's seed alone decides the head's initial weights: not how much randomness was
            # drawn before setup(), which differs between one process and DDP (Lightning re-seeds)
            if "PL_GLOBAL_SEED" in os.environ:
                torch.default_generator.manual_seed(int(os.environ["PL_GLOBAL_SEED"]))
            # frozen features keep their statistics: standardise with their plain average over the
            # training data (momentum None), as scikit-learn's StandardScaler does
            hp = self.hparams
            self.backbone.reset_head(
                len(class_names), head=hp.get("head", "linear"), embedding_dim=hp.get("embedding_dim"),
                dropout=hp.head_dropout, norm=hp.get("head_norm", False),
                norm_momentum=None if self.backbone.fully_frozen else 0.1, **(hp.get("head_args") or {}),
            )
        n = len(class_names)
        self.train_metrics = MetricCollection({"acc": MulticlassAccuracy(n, average="micro")}, prefix="train/")
        self.val_metrics = _metrics(n, "val/")
        self.test_metrics = _metrics(n, "test/")

    @property
    def num_classes(self) -> int:
        return len(self.class_names or [])

    def setup(self, stage: str) -> None:
        if self.class_names is None:
            raise ConfigError("FaceClassifier needs class_names: FaceClassifier(..., class_names=data.class_names) "
                              "(the facetransfer command links them from the DataModule)")
        self._batch_checked = False  # the first batch of each run is checked against the model
        if self.features is not None:  # frozen: the data serves this backbone's features instead of images
            self.features.attach(self.frozen_features() if self.uses_feature_cache else None)
        if self.use_channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.backbone.stages.compile()
            self._compiled = True

    def teardown(self, stage: str) -> None:
        extractor = getattr(self.features, "extractor", None)
        if extractor is not None and extractor.backbone is self.backbone:
            self.features.attach(None)

    # --- forward ---------------------------------------------------------------------------
    @property
    def preprocess(self) -> Preprocess:
        return self.backbone.preprocess

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of images; without autograd when the whole backbone is frozen (linear probe).
        Precomputed features ``(B, num_features)`` are returned as they are."""
        if x.ndim == 2:
            return x
        if self.use_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad() if self.backbone.fully_frozen else contextlib.nullcontext():
            return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` -> logits; precomputed features ``(B, num_features)`` go to the head."""
        return self.backbone.forward_head(self.forward_features(x))

    @property
    def autocast(self) -> torch.dtype | None:
        """The autocast dtype of the trainer's precision on its device (None: float32, or no trainer)."""
        trainer = self._trainer
        return autocast_dtype(trainer.precision, trainer.strategy.root_device) if trainer is not None else None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Store batches (uint8 images, see :class:`~facetransfer.data.store_batches.ImageBatch`) get
        this model's preprocessing here, on its device: augmented for training, else the eval crop."""
        if not isinstance(batch, ImageBatch):
            return batch
        transforms = BatchTransforms(self.preprocess, self.autocast or torch.float32, self.use_channels_last)
        images = transforms.train(batch.images) if batch.augment else transforms.eval(batch.images)
        return images, batch.labels

    @property
    def use_channels_last(self) -> bool:
        """The ``channels_last`` setting, resolved (``None`` means: on where it is faster, CUDA and CPU)."""
        flag = self.hparams.channels_last
        return channels_last_is_faster(self.device) if flag is None else bool(flag)

    @property
    def uses_feature_cache(self) -> bool:
        """True when the head trains on precomputed features (frozen backbone, ``feature_cache``, a provider)."""
        return bool(self.hparams.feature_cache) and self.backbone.fully_frozen and self.features is not None

    def feature_identity(self) -> dict[str, Any]:
        """What determines this model's frozen features (the key of feature caches)."""
        hp = self.hparams
        return {
            "backbone": self.backbone_name,
            "weights": hp.get("weights"),
            "weights_path": file_identity(hp.get("weights_path")),
            "random_init": weights_fingerprint(self.backbone) if not (hp.get("weights") or hp.get("weights_path")) else None,
            "backbone_args": hp.get("backbone_args"),
            "preprocess": self.preprocess.eval_dict(),
        }

    def frozen_features(self) -> BackboneFeatures:
        """This model's backbone as a feature extractor with the run's dtype and memory format."""
        return BackboneFeatures(self.backbone, self.feature_identity(), self.autocast, self.hparams.channels_last)

    def _check_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The first batch of a run against the model (features or images, crop size, labels)."""
        if getattr(self, "_batch_checked", False):
            return
        if x.ndim == 2 and not self.uses_feature_cache:
            raise ConfigError("the data serves frozen features, but this model trains its backbone (or has no feature "
                              "provider): give it the DataModule's provider (features=data.features) or use a "
                              "fresh DataModule")
        if x.ndim == 4 and x.shape[-1] != self.preprocess.crop_size:
            raise ConfigError(f"the data gives {x.shape[-1]} px images but this model expects "
                              f"{self.preprocess.crop_size} px: build the DataModule with preprocess=model.preprocess")
        if len(y) and int(y.max()) >= self.num_classes:
            raise ConfigError(f"the data has labels up to {int(y.max())} but this model has {self.num_classes} "
                              "identities: give it class_names=data.class_names (or the checkpoint's split)")
        self._batch_checked = True

    def _shared_step(self, batch, margin: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, logits, labels, features)`` of a batch of images or of cached features; ``margin``: a margin
        head's logits with the true class's margin (training)."""
        x, y = batch[0], batch[1]
        self._check_batch(x, y)
        features = self.forward_features(x)
        logits = self.backbone.forward_head(features, y if margin else None)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        return loss, logits, y, features

    def _penalty(self, batch_size: int, head_c: float | None = None) -> torch.Tensor | float:
        """``|W|^2 / (2 C n)`` on the head's weights, ``C`` = ``head_c`` (default: the model's); 0 without it."""
        c = self.hparams.get("head_c") if head_c is None else head_c
        if c is None or self.backbone.head.normalized:  # a normalised head's weight norms change nothing
            return 0.0
        return self.backbone.head.weight.float().pow(2).sum() / (2 * c * max(1, batch_size))

    def _minimize_lbfgs(
        self, optimizer: Any, x: torch.Tensor, y: torch.Tensor, head_c: float | None = None,
        label_smoothing: float = 0.0, backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One L-BFGS step (its iterations and line search) on logistic regression's objective over ``(x, y)``:
        cross-entropy plus :meth:`_penalty`. Returns ``(loss, logits)`` after the step."""

        def objective() -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.backbone.forward_head(self.forward_features(x), y)
            return F.cross_entropy(logits, y, label_smoothing=label_smoothing) + self._penalty(len(y), head_c), logits

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = objective()[0]
            backward(loss)
            self._lbfgs_losses.append(float(loss.detach()))
            return loss

        self._lbfgs_losses: list[float] = []
        optimizer.step(closure=closure)  # returns the loss before the step: evaluate the result afterwards
        with torch.no_grad():
            return objective()

    def _log_lbfgs_iterations(self) -> bool:
        """Log the objective at each of the last L-BFGS step's evaluations as a step of ``train/lbfgs_loss`` (the
        epochs of a converged probe would repeat one value); returns whether the step converged before its limit."""
        first = getattr(self, "_lbfgs_logged", 0)
        if self.logger is not None:
            for i, loss in enumerate(self._lbfgs_losses):
                self.logger.log_metrics({"train/lbfgs_loss": loss}, step=first + i)
        self._lbfgs_logged = first + len(self._lbfgs_losses)
        return len(self._lbfgs_losses) < self.hparams.lbfgs_iterations

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if not self.automatic_optimization:  # L-BFGS: the whole objective, minimised in one closure-driven step
            x, y = batch[0], batch[1]
            self._check_batch(x, y)
            loss, logits = self._minimize_lbfgs(
                self.optimizers(), x, y, label_smoothing=self.hparams.label_smoothing, backward=self.manual_backward
            )
            self._lbfgs_converged = self._log_lbfgs_iterations() and getattr(self, "_lbfgs_converged", True)
        else:
            loss, logits, y, features = self._shared_step(batch, margin=True)
            loss = loss + self._penalty(len(y)) + self._l2sp()
            if self.backbone.head.normalized:  # train/acc of the plain cosines, not of the margin-lowered ones
                with torch.no_grad():
                    logits = self.backbone.forward_head(features)
        self.train_metrics.update(logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_epoch_start(self) -> None:
        self._lbfgs_converged = True

    def on_train_epoch_end(self) -> None:
        """An L-BFGS fit whose every step converged stops: more epochs would repeat the same solution."""
        if not self.automatic_optimization and self._trainer is not None:
            self.trainer.should_stop = self.trainer.strategy.reduce_boolean_decision(self._lbfgs_converged, all=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        if self.hparams.get("open_set"):
            self._collect_embeddings(batch)
            return
        loss, logits, y, _ = self._shared_step(batch)
        self.val_metrics.update(logits, y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self.hparams.get("open_set"):
            self.log("hp_metric", self._log_verification("val/verify_")["val/verify_acc"])
            return
        values = self.val_metrics.compute()
        self.log_dict(values, prog_bar=True)
        self.log("hp_metric", values["val/acc"])
        self.val_metrics.reset()

    def test_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Logs the test loss; returns each image's ``features`` (the embedding), ``logits`` and ``labels``, for
        callbacks such as :class:`~facetransfer.training.test_faces.TestFaces`. Open-set: ``features`` (the embeddings)
        and ``labels`` (of the test people) only."""
        if self.hparams.get("open_set"):
            return self._collect_embeddings(batch)
        loss, logits, y, features = self._shared_step(batch)
        self.test_metrics.update(logits, y)
        self.log("test/loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
        return {"features": features.detach(), "logits": logits.detach(), "labels": y}

    def on_test_epoch_end(self) -> None:
        if self.hparams.get("open_set"):
            self._log_verification("test/verify_")
            return
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def predict_step(self, batch, batch_idx: int) -> dict[str, Any]:
        """Per image: its ``key``, the most probable identity (``prediction``, ``label``,
        ``confidence``) and the ``k`` most probable ones, best first: ``top_names`` (a list of
        names per image) and ``top_probs`` ``(B, k)``. ``k`` is the attribute ``predict_top_k``
        (default 5, at most the number of identities; :class:`~facetransfer.training.prediction.PredictionReport` sets it).
        """
        x, keys = batch[0], batch[-1]
        probs = self(x).float().softmax(dim=1)
        k = max(1, min(int(getattr(self, "predict_top_k", 5)), probs.shape[1]))
        top_probs, top_labels = probs.topk(k, dim=1)
        names = self.class_names or []
        return {
            "key": list(keys),
            "prediction": [names[i] for i in top_labels[:, 0].tolist()],
            "label": top_labels[:, 0].cpu(),
            "confidence": top_probs[:, 0].cpu(),
            "top_names": [[names[i] for i in row] for row in top_labels.tolist()],
            "top_probs": top_probs.cpu(),
        }

    # --- open-set evaluation ----------------------------------------------------------------
    def _collect_embeddings(self, batch) -> dict[str, torch.Tensor]:
        """Keep a batch's embeddings (after the projection) and labels for :meth:`_log_verification`."""
        x, y = batch[0], batch[1]
        embeddings = self.backbone.neck(self.forward_features(x)).float()
        self._embeddings.append((embeddings.detach(), y.detach()))
        return {"features": embeddings.detach(), "labels": y}

    def _log_verification(self, prefix: str) -> dict[str, float]:
        """Pair verification of the epoch's embeddings (all ranks' gathered), logged under ``prefix``."""
        embeddings = torch.cat([e for e, _ in self._embeddings])
        labels = torch.cat([y for _, y in self._embeddings])
        self._embeddings = []
        if self.trainer.sanity_checking:  # a few batches: too few people for pairs
            return {f"{prefix}acc": float("nan")}
        if self.trainer.world_size > 1:
            embeddings, labels = (self.all_gather(t).flatten(0, 1) for t in (embeddings, labels))
        from ..verification.openset import labelled_pairs_metrics

        values = labelled_pairs_metrics(embeddings, labels, pairs=self.hparams.verify_pairs).scalars(prefix)
        self.log_dict(values, prog_bar=prefix.startswith("val"))
        return values

    @property
    def selection_metric(self) -> str:
        """What picks the best epoch: ``val/verify_acc`` for open-set runs, else ``val/acc``."""
        return "val/verify_acc" if self.hparams.get("open_set") else "val/acc"

    # --- optimisation ----------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """The head at ``lr``; the trainable backbone at ``backbone_lr`` (one group), or one group per
        stage with ``backbone_lr_decay`` (the last stage at ``backbone_lr``, earlier ones decayed) and/or
        ``backbone_lr_relative`` (each stage's rate times the RMS of its weights)."""
        hp = self.hparams
        head = [p for m in (self.backbone.neck, self.backbone.head) for p in m.parameters() if p.requires_grad]
        head_lr = hp.lr * HEAD_LR_FEATURES / self.backbone.num_features if hp.get("head_lr_per_feature") else hp.lr
        groups = [{"params": head, "lr": head_lr, "name": "head"}]
        base = hp.lr if hp.backbone_lr is None else hp.backbone_lr
        decay = hp.get("backbone_lr_decay")
        relative = bool(hp.get("backbone_lr_relative"))
        if decay is None and not relative:
            body = [p for n, p in self.backbone.named_parameters()
                    if p.requires_grad and not n.startswith(("head.", "neck."))]
            return groups + ([{"params": body, "lr": base, "name": "backbone"}] if body else [])
        stages = [(f"backbone.{n}", [p for p in m.parameters() if p.requires_grad]) for n, m in self.backbone.stages.named_children()]
        stages.append(("backbone.pool", [p for p in self.backbone.pool.parameters() if p.requires_grad]))
        stages = [(name, params) for name, params in stages if params]
        for depth, (name, params) in enumerate(reversed(stages)):
            lr = base * (decay or 1.0) ** depth
            groups.append({"params": params, "lr": lr * weight_rms(params) if relative else lr, "name": name})
        return groups

    def _l2sp(self) -> torch.Tensor | float:
        """``l2sp / 2 * |w - w_pretrained|^2`` over the trainable backbone weights (0 when off: no anchor)."""
        total = 0.0
        params = dict(self.backbone.stages.named_parameters())
        for name, anchor in self._anchor.items():  # the trainable weights, as built
            if anchor.device != params[name].device:
                anchor = self._anchor[name] = anchor.to(params[name].device)
            total = total + (params[name].float() - anchor.float()).pow(2).sum()
        return 0.5 * self.hparams.l2sp * total

    @torch.enable_grad()
    def fit_head(self, features: torch.Tensor, labels: torch.Tensor, head_c: float = 1.0, iterations: int = 200) -> float:
        """Fit the identity head alone on frozen features to convergence (the first phase of LP-FT).

        Full-batch L-BFGS on the same objective as the ``linear_probe`` strategy: cross-entropy plus
        ``|W|^2 / (2 C n)`` with ``C = head_c``; the head's standardisation (``head_norm``) takes the
        features' statistics. Returns the final loss.
        """
        if self.class_names is None:
            raise ConfigError("fit_head needs the model's class_names")
        head = nn.ModuleList([self.backbone.neck, self.backbone.head])  # with the projection, if any
        device = next(head.parameters()).device
        x, y = features.to(device, torch.float32), labels.to(device)
        was_training = head.training
        head.train()
        optimizer = lbfgs([p for p in head.parameters() if p.requires_grad], iterations)
        loss, _ = self._minimize_lbfgs(optimizer, x, y, head_c)
        head.train(was_training)
        return float(loss)

    def configure_optimizers(self):
        hp = self.hparams
        groups = self.param_groups()
        if hp.optimizer == "lbfgs":
            params = [p for g in groups for p in g["params"]]
            return lbfgs(params, hp.lbfgs_iterations)
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9, nesterov=True, weight_decay=hp.weight_decay)
        else:
            adam = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
            fused = {"fused": True} if self.device.type == "cuda" else {}  # one kernel per step on GPUs
            opt = adam(groups, lr=hp.lr, weight_decay=hp.weight_decay, **fused)
        if hp.scheduler == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs or 1)))
        warmup = min(total - 1, hp.warmup_epochs * per_epoch)
        if hp.scheduler == "cosine":
            main = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warmup))
        else:
            main = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[total // 2 - warmup, 3 * total // 4 - warmup])
        if warmup > 0:
            ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warmup)
            main = torch.optim.lr_scheduler.SequentialLR(opt, [ramp, main], milestones=[warmup])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": main, "interval": "step"}}

    # --- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "backbone": self.backbone_name,
            "freeze": self.hparams.freeze,
            "frozen_stages": self.frozen_stages,
            "class_names": self.class_names,
            "num_features": self.backbone.num_features,
            "head": self.hparams.get("head", "linear"),
            "embedding_size": self.backbone.embedding_size,
            "preprocess": self.backbone.preprocess.to_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get(CHECKPOINT_KEY)
        if info is None:
            return
        names = info.get("class_names")
        if info.get("backbone") != self.backbone_name or (
            self.class_names is not None and names is not None and len(names) != self.num_classes
        ):
            raise WeightsError(f"the checkpoint holds backbone {info.get('backbone')!r} with {len(names or [])} "
                               f"classes; this model is {self.backbone_name!r} with {self.num_classes} classes")
        if self.class_names is None and names:
            self._build_head(list(names))
        if "preprocess" in info:
            self.backbone.preprocess = Preprocess.from_dict(info["preprocess"])

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | os.PathLike, map_location: Any = None, strict: bool = True, **kwargs: Any
    ) -> FaceClassifier:
        """The model of a checkpoint, rebuilt from its hyperparameters (``kwargs`` override them) without
        re-reading pretrained weights (the checkpoint holds them). The file is read by
        :func:`~facetransfer.io.checkpoint.read_checkpoint` (``weights_only=True``, digest checked); a
        refused, damaged or foreign file is one :class:`~facetransfer.errors.WeightsError`."""
        checkpoint = read_checkpoint(checkpoint_path)
        hparams = checkpoint.get("hyper_parameters")
        if not isinstance(hparams, dict) or not isinstance(checkpoint.get("state_dict"), dict):
            raise WeightsError(f"{checkpoint_path} is not a FaceClassifier checkpoint (no hyper_parameters/state_dict)")
        accepted = inspect.signature(cls.__init__).parameters
        with restoring_from_checkpoint():
            model = cls(**{k: v for k, v in {**hparams, **kwargs}.items() if k in accepted})
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
        model.checkpoint_info = CheckpointInfo.of(checkpoint_path, checkpoint)  # its training face crop, split ...
        return model.to(map_location) if map_location is not None else model

    def embed(self, images, face_crop: float = 1.0, flip: bool = False) -> torch.Tensor:
        """L2-normalised embeddings (:class:`~facetransfer.verification.Embedder`): the projection's output
        when the model has one (``embedding_dim``), else the backbone's features.

        ``images``: a preprocessed float batch ``(B, 3, H, W)`` (as the DataModule yields; result on the model's
        device), or PIL images / image paths / ``uint8`` tensors, one or a list, which get the backbone's eval transform
        with ``face_crop`` (result on the CPU). ``flip`` averages with the mirrored images.
        """
        from ..verification.embedder import Embedder

        embeddings = Embedder(self, face_crop=face_crop, flip=flip)(images)
        batch = isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point()
        return embeddings.to(self.device) if batch else embeddings


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> FaceClassifier:
    """The :class:`FaceClassifier` of a checkpoint, in eval mode (:meth:`FaceClassifier.load_from_checkpoint`).

    >>> model = load_model("runs/.../best.ckpt")  # doctest: +SKIP
    """
    return FaceClassifier.load_from_checkpoint(path, map_location=map_location).eval()


__all__ = ["FaceClassifier", "load_model", "restoring_from_checkpoint"]
