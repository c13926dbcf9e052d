"""Training order and augmentation that depend only on ``(seed, epoch, index)``, so that a resumed,
multi-worker or multi-process run sees the batches of one uninterrupted run (docs/reliability.md)::

    >>> sampler = ResumableSampler(range(6), seed=0, epoch=1)
    >>> [index for index, _ in sampler] == [index for index, _ in ResumableSampler(range(6), seed=0, epoch=1)]
    True
    >>> [index for index, _ in ResumableSampler(range(6), seed=0, epoch=1, skip=4)] == [i for i, _ in sampler][4:]
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def _generator(*entropy: int) -> torch.Generator:
    seed = int(np.random.SeedSequence([abs(int(e)) for e in entropy]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed)


class ResumableSampler(DistributedSampler):
    """Shuffle by ``(seed, epoch)``, shard over ranks, optionally skip the first ``skip`` items.

    Yields ``(index, item_seed)`` pairs (plain indices with ``item_seeds=False``), where
    ``item_seed`` depends only on ``(seed, epoch, index)``; wrap the dataset in
    :class:`SeededDataset` to use it.

    Args:
        data_source: the dataset (only its length is used).
        seed: seeds the order and the item seeds.
        num_replicas / rank: DDP world size and this process's rank (1 / 0 without DDP).
        epoch: the epoch to start in (a resumed run starts in the checkpoint's epoch).
        skip: items of this rank's share of ``epoch`` already trained on; applies to that
            epoch only (``skip = batches done x batch size``; ``len()`` stays the whole epoch's).
        item_seeds: yield ``(index, seed)`` pairs rather than indices.
    """

    def __init__(self, data_source: Sized, *, seed: int = 0, num_replicas: int = 1, rank: int = 0, epoch: int = 0,
                 skip: int = 0, item_seeds: bool = True) -> None:
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, seed=seed)  # type: ignore[arg-type]
        self.epoch = epoch
        self.skip = skip
        self.item_seeds = item_seeds

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at each epoch start; a pending ``skip`` belongs to its own epoch only."""
        if epoch != self.epoch:
            self.skip = 0
        super().set_epoch(epoch)

    def order(self) -> list[int]:
        """This rank's dataset indices for this epoch (padded like DistributedSampler), before ``skip``."""
        n = len(self.dataset)  # type: ignore[arg-type]
        order = torch.randperm(n, generator=_generator(self.seed, self.epoch, 0)).tolist()
        if self.total_size > n:  # every rank gets num_samples items (some repeated), as in DistributedSampler
            order += (order * (self.total_size // max(1, n) + 1))[: self.total_size - n]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[Any]:
        indices = self.order()[self.skip :]
        self.skip = 0  # consumed: a second pass over the same epoch is a whole one
        if not self.item_seeds:
            return iter(indices)
        n = len(self.dataset)  # type: ignore[arg-type]
        seeds = torch.randint(0, 2**62, (n,), generator=_generator(self.seed, self.epoch, 1)).tolist()
        return iter([(i, seeds[i]) for i in indices])


class SeededDataset(Dataset):
    """``dataset[index]`` with torch's CPU RNG seeded by the sampler's per-item seed.

    torchvision's random transforms draw from that RNG, so an item's augmentation is the
    same in any worker, after a resume and on any rank; the caller's RNG is left as it was.
    Plain integer indices (e.g. from a sequential sampler) pass through unseeded.

    >>> ds = SeededDataset([torch.rand(1) for _ in range(2)])
    >>> len(ds)
    2
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


class ResumableDataLoader(DataLoader):
    """A training ``DataLoader`` over a :class:`ResumableSampler`, which resumes by itself.

    The sampler starts where a checkpoint left off (from the progress Lightning saves), so Lightning's "dataloader is
    not resumable ... unreliable results" warning does not apply; having ``state_dict``/``load_state_dict`` tells
    Lightning so. The state is what the order depends on besides the progress: seed, batch size and number of training
    items; a resume that changes them gets a warning, since its batches then differ from the interrupted run's.
    """

    def state_dict(self) -> dict[str, Any]:
        return {"seed": int(getattr(self.sampler, "seed", 0)), "batch_size": self.batch_size, "items": len(self.dataset)}  # type: ignore[arg-type]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        now = self.state_dict()
        changed = {k: (v, now[k]) for k, v in state_dict.items() if k in now and now[k] != v}
        if changed:
            what = ", ".join(f"{k} {new} (checkpoint: {old})" for k, (old, new) in changed.items())
            rank_zero_warn(f"resuming with training data {what}: the batches do not continue the interrupted run's order")


def resume_position(trainer: Any, batches_per_epoch: int) -> tuple[int, int]:
    """``(epoch, batches already trained in it)`` where a fit's training data continues.

    On a resumed fit these come from the progress Lightning restored from the checkpoint (epochs completed, batches
    processed in the current one), so a checkpoint written mid-epoch continues with the next batch and one written at
    an epoch's end with the next epoch. Otherwise ``(current epoch, 0)``: Lightning sets the epoch before it iterates.
    ``(0, 0)`` outside a fit.
    """
    loop = getattr(trainer, "fit_loop", None)
    if loop is None or getattr(trainer.state, "fn", None) != "fit":
        return 0, 0
    if not loop.is_resuming:  # (``restarting`` is False for a checkpoint of a finished epoch)
        return trainer.current_epoch, 0
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches_per_epoch = min(batches_per_epoch, limit)
    elif limit is not None:
        batches_per_epoch = int(batches_per_epoch * limit)
    epoch = loop.epoch_progress.current.completed
    done = loop.epoch_loop.batch_progress.current.processed
    return (epoch + 1, 0) if done >= batches_per_epoch else (epoch, done)


__all__ = ["ResumableDataLoader", "ResumableSampler", "SeededDataset", "resume_position"]
