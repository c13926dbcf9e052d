"""Where things run: the devices of a run, in words, and the dtype that autocast and batch transforms use.

    >>> device_label(torch.device("cpu"))  # doctest: +ELLIPSIS
    'cpu (... cores)'
    >>> autocast_dtype("bf16-mixed", "cuda")
    torch.bfloat16
    >>> autocast_dtype("bf16-mixed", "cpu") is None  # CPU runs compute in float32
    True
"""

from __future__ import annotations

from typing import Any

import torch

from ..io.images import usable_cpus

_MIXED = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "bf16": torch.bfloat16, "16": torch.float16}


def autocast_dtype(precision: object, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of a Lightning ``precision`` value on ``device`` (None: float32).

    Mixed precision is used on CUDA devices only; CPU runs keep float32 (bf16 autocast on a CPU
    is slower than float32 for convolutions on most machines).
    """
    if torch.device(device).type != "cuda":
        return None
    return _MIXED.get(str(precision))


def device_label(device: torch.device) -> str:
    """``NVIDIA H200`` for a CUDA device, ``cpu (2 cores)`` for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({usable_cpus()} cores)"
    return device.type


def feature_device(trainer_args: dict[str, Any]) -> torch.device:
    """Where solver cells extract features: the sweep's accelerator (CUDA when available)."""
    accelerator = str(trainer_args.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


__all__ = ["autocast_dtype", "device_label", "feature_device"]
