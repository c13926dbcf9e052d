"""Lightning precision settings -> the dtype that autocast and batch transforms use.

    >>> autocast_dtype("bf16-mixed", "cuda")
    torch.bfloat16
    >>> autocast_dtype("bf16-mixed", "cpu") is None  # CPU runs compute in float32
    True
"""

from __future__ import annotations

import torch

_MIXED = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "bf16": torch.bfloat16, "16": torch.float16}


def autocast_dtype(precision: object, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of a Lightning ``precision`` value on ``device`` (None: float32).

    Mixed precision is used on CUDA devices only; CPU runs keep float32 (bf16 autocast on a CPU
    is slower than float32 for convolutions on most machines).
    """
    if torch.device(device).type != "cuda":
        return None
    return _MIXED.get(str(precision))


__all__ = ["autocast_dtype"]
