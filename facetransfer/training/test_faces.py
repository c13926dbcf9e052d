"""What a face model gets wrong, in TensorBoard, at the end of ``test`` (docs/getting-started.md):

* ``test/confusion``: the confusion matrix with identity names (up to 40 identities), else the most confused pairs;
* ``test/misclassified``: misclassified test faces, each titled with its true and predicted name;
* ``test/embeddings``: the test images' backbone features in the embedding projector, labelled with their identity
  and drawn as their faces.

An open-set test (people the model was not trained on) has no predictions to confuse: it shows the test people's
embeddings in the projector, labelled with their names (``FaceClassifier(eval_class_names=...)``).

    >>> trainer = ft.make_trainer(callbacks=[TestFaces(projector=500)])  # doctest: +SKIP

Under DDP, rank 0 shows the test images it saw. A model that tests on cached features (a linear probe) shows the
faces of its data's test split (``FaceClassifier(features=data.features)``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer

from ..preprocess import ImageBatch


def _short(name: str, chars: int = 18) -> str:
    return name if len(name) <= chars else name[: chars - 1] + "…"


def thumbnails(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], side: int) -> torch.Tensor:
    """Network input ``(B, 3, H, W)`` (normalised float, or uint8 pixels) -> ``(B, 3, side, side)`` uint8 on the CPU.

    >>> thumbnails(torch.zeros(2, 3, 64, 64), (0.5,) * 3, (0.5,) * 3, 16).shape
    torch.Size([2, 3, 16, 16])
    """
    normalised, images = images.is_floating_point(), images.detach().float()
    if normalised:
        images = (images * images.new_tensor(std).view(1, -1, 1, 1) + images.new_tensor(mean).view(1, -1, 1, 1)) * 255
    small = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
    return small.round().clamp(0, 255).to(torch.uint8).cpu()


class TestFaces(Callback):
    """Confusion figure, misclassified faces (at most ``misclassified``) and the embedding projector (at most
    ``projector`` test images, ``side``-pixel faces) of a ``test`` run, in TensorBoard."""

    def __init__(self, confusion: bool = True, misclassified: int = 32, projector: int = 1000, side: int = 48) -> None:
        self.confusion, self.misclassified, self.projector, self.side = confusion, misclassified, projector, side
        self._seen: list[dict[str, torch.Tensor]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._seen = []

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(outputs, dict) and "features" in outputs:  # FaceClassifier.test_step's
            seen = {"features": outputs["features"].float().cpu(), "labels": outputs["labels"].cpu()}
            if "logits" in outputs:  # closed set (open set: embeddings of people without a class)
                seen["predicted"] = outputs["logits"].argmax(dim=1).cpu()
            if batch[0].ndim == 4:  # images, not cached features
                seen["faces"] = thumbnails(batch[0], pl_module.preprocess.mean, pl_module.preprocess.std, self.side)
            self._seen.append(seen)

    def _test_split_faces(self, pl_module: LightningModule, count: int) -> torch.Tensor | None:
        """The first ``count`` faces of the test split, read through the data's feature provider."""
        provider, faces = getattr(pl_module, "features", None), []
        if getattr(provider, "splits", None) is None:
            return None
        for batch in provider.splits("test")[1]():
            images = batch.images if isinstance(batch, ImageBatch) else batch[0]
            faces.append(thumbnails(images, pl_module.preprocess.mean, pl_module.preprocess.std, self.side))
            if sum(map(len, faces)) >= count:
                break
        return torch.cat(faces)[:count] if faces else None

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        writer = getattr(trainer.logger, "experiment", None)
        if not self._seen or not trainer.is_global_zero or not hasattr(writer, "add_embedding"):
            return
        seen, self._seen = {key: torch.cat([s[key] for s in self._seen]) for key in self._seen[0]}, []
        labels, predicted, step = seen["labels"], seen.get("predicted"), trainer.global_step
        if predicted is None:
            names = (getattr(pl_module, "eval_class_names", None)
                     or [f"person {i}" for i in range(int(labels.max()) + 1)])
            wrong = labels[:0]
        else:
            names = pl_module.class_names or []
            wrong = (labels != predicted).nonzero().flatten()[: self.misclassified]
        shown = min(self.projector, len(labels))
        faces = seen.get("faces")
        if faces is None:
            faces = self._test_split_faces(pl_module, max(shown, int(wrong.max()) + 1 if len(wrong) else 0))
        if self.confusion and predicted is not None:
            writer.add_figure("test/confusion", confusion_figure(labels, predicted, names), step)
        if len(wrong) and faces is not None and len(faces) > int(wrong.max()):
            grid = faces_figure(faces[wrong], labels[wrong], predicted[wrong], names)
            writer.add_figure("test/misclassified", grid, step)
        if shown:
            writer.add_embedding(seen["features"][:shown], metadata=[names[i] for i in labels[:shown].tolist()],
                                 label_img=None if faces is None else faces[:shown].float() / 255, global_step=step,
                                 tag="test/embeddings")


def confusion_figure(labels: torch.Tensor, predicted: torch.Tensor, names: list[str], most: int = 20):
    """The confusion matrix of up to 40 identities, else the ``most`` confused pairs as bars (a matplotlib Figure)."""
    from matplotlib.figure import Figure

    k = len(names)
    counts = torch.bincount(labels * k + predicted, minlength=k * k).view(k, k)
    fig = Figure(figsize=(4 + k * 0.18, 3.5 + k * 0.18) if k <= 40 else (7, 7), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if k <= 40:
        fig.colorbar(ax.imshow(counts.numpy(), cmap="Blues"), ax=ax, fraction=0.046)
        ax.set_xticks(range(k), [_short(n) for n in names], rotation=90, fontsize=6)
        ax.set_yticks(range(k), [_short(n) for n in names], fontsize=6)
        right = f"{int(counts.trace())} of {int(counts.sum())} right"
        ax.set(xlabel="predicted", ylabel="true", title=f"test confusion ({right})")
    else:
        off = counts.fill_diagonal_(0).flatten()
        top = [i for i in off.argsort(descending=True)[:most].tolist() if off[i] > 0]
        ax.barh(range(len(top)), [int(off[i]) for i in top], color="tab:red")
        ax.set_yticks(range(len(top)), [f"{_short(names[i // k])} → {_short(names[i % k])}" for i in top], fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel="test images", title=f"the most confused pairs (true → predicted) of {k} identities")
    fig.tight_layout()
    return fig


def faces_figure(faces: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, names: list[str]):
    """A grid of faces ``(N, 3, S, S)`` uint8, each titled ``true`` / ``→ predicted`` (a matplotlib Figure)."""
    from matplotlib.figure import Figure

    columns = min(8, len(faces))
    rows = -(-len(faces) // columns)
    fig = Figure(figsize=(1.3 * columns, 1.55 * rows), dpi=100)
    for i, (face, true, guess) in enumerate(zip(faces, labels.tolist(), predicted.tolist())):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(face.permute(1, 2, 0).numpy())
        ax.set_title(f"{_short(names[true])}\n→ {_short(names[guess])}", fontsize=6)
        ax.axis("off")
    fig.tight_layout()
    return fig


__all__ = ["TestFaces", "confusion_figure", "faces_figure", "thumbnails"]
