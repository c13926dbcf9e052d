"""tune_malloc: freed tensor memory is reused instead of mapped afresh (Linux/glibc)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import facetransfer.training.malloc_tuning as malloc_tuning

# malloc_tuning.py needs only the standard library: load it alone, so the probe skips importing Lightning
PROBE = textwrap.dedent(
    """
    import importlib.util, resource, sys, torch
    spec = importlib.util.spec_from_file_location("malloc_tuning", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    applied = module.tune_malloc()
    faults = []
    for _ in range(20):  # a training loop: the same buffers, batch after batch
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(25_000_000)  # 100 MB, above glibc's default mmap threshold
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del x
    print(applied, sum(faults[-5:]))  # the steady state, after the heap has grown to hold the block
    """
)
USER_CHOICES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def _probe(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if k not in USER_CHOICES}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, malloc_tuning.__file__],
        env={**clean, **env}, capture_output=True, text=True, check=True,
    )
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_tuned_process_reuses_freed_tensor_memory():
    applied, faults = _probe()
    untuned_applied, untuned_faults = _probe(FACETRANSFER_TUNE_MALLOC="0")
    assert applied and not untuned_applied
    # 100 MB = 24,414 pages: untuned, every allocation faults them all in again (5 x 24,414);
    # tuned, once the heap has grown to hold the block it is reused without a fault
    assert untuned_faults > 100_000
    assert faults < 1_000


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"FACETRANSFER_TUNE_MALLOC": "off"}, "FACETRANSFER_TUNE_MALLOC is off"),
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "already sets MALLOC_MMAP_THRESHOLD_"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "already sets GLIBC_TUNABLES"),
        ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "another allocator is preloaded"),
    ],
)
def test_user_choices_are_respected(monkeypatch, env, reason):
    for name in USER_CHOICES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if sys.platform.startswith("linux"):
        assert reason in malloc_tuning._reason_to_skip()
