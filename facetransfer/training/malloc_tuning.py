"""Keep freed tensor memory in the process (Linux/glibc): much faster CPU runs (docs/performance.md).

A CNN on the CPU frees and re-allocates activation buffers of tens to hundreds of MB every batch; glibc serves
blocks above its mmap threshold (at most 32 MB by default) with a fresh ``mmap`` and ``munmap`` s them, so every
batch page-faults its activations in again. Raising the mmap and trim thresholds (what PyTorch's CPU tuning guide
gets with jemalloc/tcmalloc) doubled MobileNetV2 steps on a 2-core Xeon; memory a run has freed stays with the
process. The ``facetransfer`` command applies it at start-up; a Python program can call it first thing::

    >>> import facetransfer as ft
    >>> ft.tune_malloc()  # doctest: +SKIP
    True

It does nothing (and returns False) off glibc, when the C library refuses the values, or when turned off or
already chosen by the user (docs/reference.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLDS = (1 << 30, 32 << 20)  # blocks up to 1 GiB from the reusable heap (older glibc: 32 MiB at most)
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free heap instead of returning it

_USER_CHOICES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_applied = False


def _reason_to_skip() -> str | None:
    if os.environ.get("FACETRANSFER_TUNE_MALLOC", "1").strip().lower() in ("0", "false", "no", "off"):
        return "FACETRANSFER_TUNE_MALLOC is off"
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    chosen = [name for name in _USER_CHOICES if os.environ.get(name)]
    if chosen:
        return f"the environment already sets {', '.join(chosen)}"
    if any(lib in os.environ.get("LD_PRELOAD", "") for lib in ("jemalloc", "tcmalloc", "mimalloc")):
        return "another allocator is preloaded"
    return None


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when they are in effect."""
    global _applied
    if _applied:
        return True
    reason = _reason_to_skip()
    if reason is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            reason = "no glibc mallopt"
        else:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            mmap_ok = any(mallopt(M_MMAP_THRESHOLD, value) == 1 for value in MMAP_THRESHOLDS)
            if mmap_ok and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
                _applied = True
                return True
            reason = "glibc refused the thresholds"
    log.debug("malloc thresholds left alone: %s", reason)
    return False


__all__ = ["tune_malloc"]
